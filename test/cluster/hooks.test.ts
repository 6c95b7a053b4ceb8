// Snapshot hooks on the local cluster: run by Walle through the API server's pods/exec in a real container (the
// kubelet, containerd and runc of the local node), bounded by the admission policy walle-hook-exec. The workload
// is a pod whose volume is the PVC; its hooks write and remove a marker, so what the snapshot holds shows when
// each ran.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from "vitest";
import { tickCommand } from "../../cluster/run-walle.ts";
import { INSTALL_NAMESPACE, ServiceAccount } from "../../lib/api/constants.ts";
import { execInContainer } from "../../lib/k8s/exec.ts";
import { Informer, type KubeObject } from "../../lib/k8s/informer.ts";
import { startRestServer, tempDir, type RestServer } from "../integration/worker-harness.ts";
import { pvcWithData, repositorySecret, settled, settledRestore, volumeDir, type BackupJobObj } from "../support/backup-fixtures.ts";
import type { RestClient } from "../../lib/k8s/rest.ts";
import { admin, clientForServiceAccount, clientForUser, createNamespace, grantRole, waitFor } from "../support/kube.ts";
import { runTick } from "../support/tick.ts";
import { startWalle } from "../support/walle.ts";

const USER = "hooks";
let rest: RestServer;

beforeAll(async () => {
  rest = await startRestServer({ dataDir: await tempDir("rest-hooks"), users: { [USER]: "rest-secret" } });
});
afterAll(async () => {
  await rest?.stop();
});

/** Namespace with PVC `data`, its repository Secret `repo`, and pod app-0 mounting the PVC at /data in container `app`. */
async function workload(prefix: string, annotations: Record<string, string> = {}): Promise<string> {
  const ns = await createNamespace(prefix);
  await pvcWithData(ns, "data", { "db/rows": "1,2,3\n" });
  await repositorySecret(ns, "repo", rest.repository(USER, "rest-secret", ns));
  await admin().create(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "app-0", annotations },
    spec: {
      // The sidecar mounts nothing: the hooks run in the container that mounts the PVC.
      containers: [
        { name: "sidecar", image: "busybox:1.36", command: ["sleep", "infinity"] },
        { name: "app", image: "busybox:1.36", command: ["sleep", "infinity"], volumeMounts: [{ name: "data", mountPath: "/data" }] },
      ],
      volumes: [{ name: "data", persistentVolumeClaim: { claimName: "data" } }],
    },
  });
  await waitFor(
    async () => (await admin().get<{ status?: { phase?: string } }>(`/api/v1/namespaces/${ns}/pods/app-0`)).status?.phase === "Running",
    "pod app-0 Running",
    120_000,
  );
  return ns;
}

async function backupJob(ns: string, name: string, spec: Record<string, string> = {}): Promise<void> {
  await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, {
    apiVersion: "ros.io/v1",
    kind: "BackupJob",
    metadata: { name },
    spec: { sourcePvc: "data", repository: { name: "repo", namespace: ns }, ...spec },
  });
}

const condition = (bj: BackupJobObj, type: string) => bj.status?.conditions?.find((c) => c.type === type);

async function eventsOf(ns: string, name: string): Promise<{ type: string; reason: string; note: string }[]> {
  const list = await admin().get<{ items: { type: string; reason: string; note: string; regarding: { name: string } }[] }>(
    `/apis/events.k8s.io/v1/namespaces/${ns}/events`,
  );
  return list.items.filter((e) => e.regarding.name === name).map(({ type, reason, note }) => ({ type, reason, note }));
}

const permits = () => admin().get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${INSTALL_NAMESPACE}/configmaps/walle-exec-permits`);

/** Every VolumeSnapshot made in `ns` from now on, as a watch sees them (for a proof that none was). */
async function watchSnapshots(ns: string): Promise<string[]> {
  const made: string[] = [];
  const informer = new Informer<KubeObject>(admin(), `/apis/snapshot.storage.k8s.io/v1/namespaces/${ns}/volumesnapshots`, (type, obj) => {
    if (type === "add") made.push(obj.metadata.name ?? "");
  });
  await informer.start();
  onTestFinished(() => informer.stop());
  return made;
}

describe("snapshot hooks", () => {
  it("the before-hook's marker is in the snapshot, the after-hook removed it from the live volume, and a restore brings it back", async () => {
    await startWalle();
    const ns = await workload("hooks");
    await backupJob(ns, "frozen", { beforeSnapshot: "echo frozen in $(hostname) > /data/.frozen && sync", afterSnapshot: "rm /data/.frozen && echo thawed" });
    const bj = await settled(ns, "frozen", 300_000);
    expect(bj.status?.phase, JSON.stringify(bj.status?.conditions)).toBe("Finished");
    expect(bj.status?.hooks).toEqual({
      before: expect.objectContaining({
        from: "BackupJob",
        targets: [{ pod: "app-0", container: "app" }],
        outcome: "Succeeded",
        output: "[app-0/app exit 0] ",
      }),
      after: expect.objectContaining({
        from: "BackupJob",
        targets: [{ pod: "app-0", container: "app" }],
        outcome: "Succeeded",
        output: "[app-0/app exit 0] thawed",
      }),
    });
    expect(condition(bj, "Hooks")).toMatchObject({ status: "True", reason: "HooksSucceeded" });
    const hookEvents = (await eventsOf(ns, "frozen")).filter((e) => e.reason.startsWith("Hook"));
    // One Event for each hook's end; a list of Events has no order, so they are sorted.
    expect(hookEvents.map((e) => e.note).sort(), JSON.stringify(hookEvents)).toEqual([
      expect.stringMatching(/^The after-snapshot hook \(from the BackupJob\) succeeded in app-0\/app\. Output: \[app-0\/app exit 0\] thawed$/),
      expect.stringMatching(/^The before-snapshot hook \(from the BackupJob\) succeeded in app-0\/app\./),
    ]);
    // The hook ran in order around the cut: the live volume no longer has the marker; the snapshot does.
    const live = await volumeDir(ns, "data");
    expect(existsSync(path.join(live, ".frozen"))).toBe(false);
    await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backuprestores`, {
      apiVersion: "ros.io/v1",
      kind: "BackupRestore",
      metadata: { name: "back" },
      spec: {
        repository: { name: "repo", namespace: ns },
        source: { snapshotId: bj.status?.snapshotId },
        target: { newPvc: { name: "restored", size: "1Gi" } },
      },
    });
    expect((await settledRestore(ns, "back", 300_000)).status?.phase).toBe("Finished");
    const restored = await volumeDir(ns, "restored");
    expect(await readFile(path.join(restored, ".frozen"), "utf8")).toBe("frozen in app-0\n");
    expect(await readFile(path.join(restored, "db/rows"), "utf8")).toBe("1,2,3\n");
    // Nothing permits another exec now: each permit went with its exec.
    expect((await permits()).data ?? {}).toEqual({});
  }, 600_000);

  it("a before-hook that fails (from the pod's annotation) leaves no snapshot, reads Failed with the hook's output, and the after-hook still runs", async () => {
    await startWalle();
    const ns = await workload("hooks-fail", {
      "ros.io/before-backup": "echo cannot flush the tables >&2; exit 7",
      "ros.io/after-backup": "echo thawed >> /data/after.log",
    });
    const snapshots = await watchSnapshots(ns);
    await backupJob(ns, "refused");
    const bj = await settled(ns, "refused", 300_000);
    expect(bj.status?.phase).toBe("Failed");
    expect(condition(bj, "BackupState")).toMatchObject({
      reason: "BeforeHookFailed",
      message:
        "No snapshot was taken. The before-snapshot hook (from the pods' annotation) failed in app-0/app. Output: [app-0/app exit 7] cannot flush the tables",
    });
    expect(bj.status?.hooks?.after).toMatchObject({ outcome: "Succeeded" });
    expect(await readFile(path.join(await volumeDir(ns, "data"), "after.log"), "utf8")).toBe("thawed\n");
    expect(snapshots).toEqual([]);
    expect(bj.status?.snapshotId).toBeUndefined();
  }, 300_000);

  it("the admission policy lets Walle's own service account run only what a permit names, which only Walle may write; anyone else's exec is untouched", async () => {
    await startWalle();
    const ns = await workload("hooks-bound");
    const reconcile = await clientForServiceAccount(INSTALL_NAMESPACE, ServiceAccount.Reconcile);
    const target = { namespace: ns, pod: "app-0", container: "app" };
    const exec = (api: RestClient, command: string, container = "app") =>
      execInContainer(api, { ...target, container }, ["/bin/sh", "-c", command], 30_000).catch((e: unknown) => e as Error);
    const denied = /ValidatingAdmissionPolicy 'walle-hook-exec'.*none is for this command in .*\/app-0\/(app|sidecar)/;
    expect(((await exec(reconcile, "cat /data/db/rows")) as Error).message).toMatch(denied);
    // A permit for one command in one container: that one runs, another command or container does not.
    await reconcile.patch(`/api/v1/namespaces/${INSTALL_NAMESPACE}/configmaps/walle-exec-permits`, { data: { [`${ns}_app-0_app_probe`]: "echo permitted" } });
    onTestFinished(() =>
      admin()
        .patch(`/api/v1/namespaces/${INSTALL_NAMESPACE}/configmaps/walle-exec-permits`, { data: { [`${ns}_app-0_app_probe`]: null } })
        .then(() => undefined),
    );
    expect(
      await waitFor(
        async () => {
          const r = await exec(reconcile, "echo permitted");
          return r instanceof Error ? undefined : r;
        },
        "the policy to see the permit",
        30_000,
      ),
    ).toMatchObject({ exitCode: 0, output: "permitted\n" });
    expect(((await exec(reconcile, "cat /data/db/rows")) as Error).message).toMatch(denied);
    expect(((await exec(reconcile, "echo permitted", "sidecar")) as Error).message).toMatch(denied);
    // A tenant (admin of the namespace) cannot write a permit.
    await grantRole(
      ns,
      "tenant-admin",
      [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }],
      [{ kind: "User", apiGroup: "rbac.authorization.k8s.io", name: "tenant" }],
    );
    const tenant = await clientForUser("tenant");
    const forged = await tenant
      .patch(`/api/v1/namespaces/${INSTALL_NAMESPACE}/configmaps/walle-exec-permits`, { data: { [`${ns}_app-0_app_x`]: "cat /data/db/rows" } })
      .catch((e: unknown) => e);
    expect(forged).toMatchObject({ code: 403 });
    // The policy binds Walle's accounts alone: the tenant's own exec, with no permit, runs as before.
    expect(await exec(tenant, "cat /data/db/rows")).toMatchObject({ exitCode: 0, output: "1,2,3\n" });
  }, 300_000);

  it("a ros.io/backup-command workload is backed up from its stdout, without a volume snapshot, and restored into a file whose content is the command's output", async () => {
    await startWalle();
    const command = "echo '-- dump of shop'; cat /data/db/rows";
    const ns = await workload("dump", { "ros.io/backup-command": command });
    const snapshots = await watchSnapshots(ns);
    await backupJob(ns, "dump");
    const bj = await settled(ns, "dump", 300_000);
    expect(bj.status?.phase, JSON.stringify(bj.status?.conditions)).toBe("Finished");
    expect(bj.status?.stream).toEqual({ command, from: "Annotation", pod: "app-0", container: "app", fileName: "data.app.stdout" });
    expect(snapshots).toEqual([]);
    await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backuprestores`, {
      apiVersion: "ros.io/v1",
      kind: "BackupRestore",
      metadata: { name: "dumped" },
      spec: {
        repository: { name: "repo", namespace: ns },
        source: { snapshotId: bj.status?.snapshotId },
        target: { newPvc: { name: "from-dump", size: "1Gi" } },
      },
    });
    expect((await settledRestore(ns, "dumped", 300_000)).status?.phase).toBe("Finished");
    expect(await readFile(path.join(await volumeDir(ns, "from-dump"), "data.app.stdout"), "utf8")).toBe("-- dump of shop\n1,2,3\n");

    // A command that fails: no snapshot, and its stderr in the message.
    await backupJob(ns, "broken", { backupCommand: "echo 'COPY orders'; echo 'pg_dump: error: connection refused' >&2; exit 2" });
    const broken = await settled(ns, "broken", 300_000);
    expect(broken.status?.phase).toBe("Failed");
    expect(condition(broken, "BackupState")).toMatchObject({
      reason: "CommandFailed",
      message: "The backup command exited 2: pg_dump: error: connection refused. No snapshot was made.",
    });
    expect(broken.status?.snapshotId).toBeUndefined();
  }, 600_000);

  it("the function killed between the before-hook and the snapshot: the next run makes the snapshot, and the after-hook runs exactly once", async () => {
    // No reconcile function: the tick's resync drives the BackupJob, and its process is the one killed.
    const ns = await workload("hooks-kill");
    const env = { WALLE_HOOK_TIMEOUT_SECONDS: "5", WALLE_SNAPSHOT_TIMEOUT_SECONDS: "120", WALLE_WORKER_DEADLINE_SECONDS: "300", LOG_LEVEL: "warn" };
    await backupJob(ns, "killed", { beforeSnapshot: "echo before >> /data/hooks.log", afterSnapshot: "echo after >> /data/hooks.log" });
    const stateDir = inject("clusterStateDir");
    const command = await tickCommand({ admin: admin(), stateDir, env });
    const [bin = process.execPath, ...args] = command.argv;
    const tick = spawn(bin, args, { env: command.env, stdio: "ignore" });
    const ended = new Promise<string | null>((resolve) => tick.once("exit", (_code, signal) => resolve(signal)));
    // SIGKILLed the moment the status says the before-hook ended.
    const jobs = new Informer<KubeObject & { status?: BackupJobObj["status"] }>(admin(), `/apis/ros.io/v1/namespaces/${ns}/backupjobs`, (_type, obj) => {
      if (obj.status?.hooks?.before?.finishTime) tick.kill("SIGKILL");
    });
    await jobs.start();
    onTestFinished(() => jobs.stop());
    expect(await ended).toBe("SIGKILL");
    const atKill = await admin().get<BackupJobObj>(`/apis/ros.io/v1/namespaces/${ns}/backupjobs/killed`);
    expect(atKill.status?.hooks?.before?.outcome).toBe("Succeeded");
    expect(atKill.status?.hooks?.after?.startTime).toBeUndefined();
    const bj = await waitFor(
      async () => {
        const r = await runTick({ env });
        if (r.code !== 0) throw new Error(`the tick failed (${r.code}): ${r.stderr}`);
        const j = await admin().get<BackupJobObj>(`/apis/ros.io/v1/namespaces/${ns}/backupjobs/killed`);
        return j.status?.conditions?.some((c) => c.type === "CleanedUp" && c.status === "True") ? j : undefined;
      },
      "the BackupJob to settle through ticks",
      300_000,
    );
    expect(bj.status?.phase, JSON.stringify(bj.status?.conditions)).toBe("Finished");
    expect(bj.status?.hooks?.after).toMatchObject({ outcome: "Succeeded" });
    expect(await readFile(path.join(await volumeDir(ns, "data"), "hooks.log"), "utf8")).toBe("before\nafter\n");
  }, 600_000);
});

// Faults of the control plane itself, on a local cluster of its own (they would disturb every other test of the
// shared one): kube-apiserver restarted while a worker backs up, and the tick killed in the middle of starting a
// run. Each ends Finished, with nothing of Walle's left and the repository clean by `restic check`.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from "vitest";
import { applyObjects, startCluster, STATE_ROOT, type Cluster } from "../../cluster/index.ts";
import { startRestServer as startRealRestServer, type RestServer } from "../../cluster/rest-server.ts";
import { installWalle, runWalle, tickCommand, type RunningWalle } from "../../cluster/run-walle.ts";
import { INSTALL_NAMESPACE, Label, ServiceAccount } from "../../lib/api/constants.ts";
import { Informer, type KubeObject } from "../../lib/k8s/informer.ts";
import { createLogger } from "../../lib/log.ts";
import { restic } from "../integration/worker-harness.ts";
import { csiStorage, expectNoLeftovers, PASSWORD, settled, volumeDir, type BackupJobObj, type On } from "../support/backup-fixtures.ts";
import { waitFor } from "../support/kube.ts";
import { runTick } from "../support/tick.ts";

let stateDir: string;
let cluster: Cluster | undefined;
let rest: RestServer | undefined;
let on: On;

beforeAll(async () => {
  stateDir = await mkdtemp(path.join(STATE_ROOT, "walle-faults-"));
  cluster = await startCluster({ stateDir });
  on = { api: cluster.api, stateDir };
  await installWalle(cluster.api);
  await applyObjects(
    cluster.api,
    [ServiceAccount.Reconcile, ServiceAccount.Tick].map((name) => ({
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name, namespace: INSTALL_NAMESPACE },
    })),
  );
  rest = await startRealRestServer({
    binary: inject("restServer"),
    dataDir: path.join(stateDir, "rest-server"),
    users: { backup: "rest-secret" },
    host: cluster.node.network.hostIp,
  });
}, 900_000);

afterAll(async () => {
  await rest?.stop();
  await cluster?.stop();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
}, 120_000);

async function startFunction(): Promise<RunningWalle> {
  const level = process.env.WALLE_TEST_LOG_LEVEL === "info" ? "info" : "silent";
  const walle = await runWalle({
    admin: on.api,
    stateDir,
    log: createLogger({ function: "walle-reconcile", level }),
    env: { WALLE_SNAPSHOT_TIMEOUT_SECONDS: "120", WALLE_WORKER_DEADLINE_SECONDS: "300" },
  });
  onTestFinished(() => walle.stop());
  return walle;
}

/**
 * A namespace with a repository Secret and PVCs holding `bytes` of random data each, as a database leaves them
 * (a 0700 directory of uid 999); an admin has allowed full-fidelity workers there, as the README shows.
 */
async function tenant(name: string, pvcs: readonly string[], bytes: number, labels: Record<string, string> = {}): Promise<string> {
  await on.api.create("/api/v1/namespaces", {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name, labels: { ...labels, "pod-security.kubernetes.io/enforce": "baseline" }, annotations: { "ros.io/privileged-workers": "true" } },
  });
  await waitFor(
    async () => (await on.api.get<{ items: unknown[] }>(`/api/v1/namespaces/${name}/serviceaccounts`)).items.length > 0,
    `namespace ${name}'s default service account`,
    30_000,
  );
  const repository = rest?.repository("backup", "rest-secret", name) ?? "";
  await on.api.create(`/api/v1/namespaces/${name}/secrets`, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "repo" },
    stringData: { RESTIC_REPOSITORY: repository, RESTIC_PASSWORD: PASSWORD, INITIALIZE_REPO: "true" },
  });
  for (const pvc of pvcs) {
    await on.api.create(`/api/v1/namespaces/${name}/persistentvolumeclaims`, {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: pvc, labels: { app: "faults" } },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    });
  }
  for (const pvc of pvcs) {
    const dir = await volumeDir(name, pvc, on);
    await mkdir(path.join(dir, "pgdata"), { recursive: true });
    await writeFile(path.join(dir, "pgdata", "base.bin"), randomBytes(bytes), { mode: 0o600 });
    await chmod(path.join(dir, "pgdata"), 0o700);
    await chown(path.join(dir, "pgdata", "base.bin"), 999, 999);
    await chown(path.join(dir, "pgdata"), 999, 999);
  }
  return repository;
}

/** The tick's command every `everyMs`, as KEDA's window starts it, until the test ends. */
function ticking(everyMs: number): void {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await runTick({ on });
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  onTestFinished(async () => {
    stopped = true;
    await loop;
  });
}

describe("the control plane fails under a backup", () => {
  it("kube-apiserver restarted while the worker backs up: Finished, one snapshot, restic check clean, nothing left", async () => {
    await startFunction();
    const before = await csiStorage(on);
    const repository = await tenant("apiserver-restart", ["data"], 96 * 1024 * 1024);
    await on.api.create("/apis/ros.io/v1/namespaces/apiserver-restart/backupjobs", {
      apiVersion: "ros.io/v1",
      kind: "BackupJob",
      metadata: { name: "through" },
      spec: { sourcePvc: "data", repository: { name: "repo", namespace: "apiserver-restart" } },
    });
    await waitFor(
      async () => (await on.api.get<BackupJobObj>("/apis/ros.io/v1/namespaces/apiserver-restart/backupjobs/through")).status?.phase === "BackingUp",
      "the worker to back up",
      120_000,
    );

    // Down for 5 s while restic uploads: the function's requests fail, every watch (the adapter's, the node's, the
    // controllers') breaks, and what changes meanwhile is never sent as an event. The tick, every 10 s, is the net.
    await cluster?.controlPlane.restartApiServer(5000);
    ticking(10_000);

    const bj = await settled("apiserver-restart", "through", 240_000, on);
    expect(bj.status?.phase, JSON.stringify(bj.status?.conditions)).toBe("Finished");
    const env = { RESTIC_REPOSITORY: repository, RESTIC_PASSWORD: PASSWORD };
    const snapshots = JSON.parse(await restic(["snapshots", "--json", "--no-lock"], env)) as { id: string }[];
    expect(snapshots.map((s) => s.id)).toEqual([bj.status?.snapshotId]);
    expect(await restic(["check"], env)).toMatch(/no errors were found/);
    await expectNoLeftovers(["apiserver-restart"], before, on);
  }, 600_000);

  it("the tick killed while it starts a run of 40 PVCs: the next tick completes the run, each PVC backed up once", async () => {
    await startFunction();
    const before = await csiStorage(on);
    const pvcs = Array.from({ length: 40 }, (_, i) => `data-${i}`);
    const repository = await tenant("tick-kill", pvcs, 4096, { "walle.test/faults": "tick-kill" });
    await on.api.create("/apis/ros.io/v1/backupschedules", {
      apiVersion: "ros.io/v1",
      kind: "BackupSchedule",
      metadata: { name: "tick-kill" },
      spec: {
        interval: "24h",
        repository: { name: "repo", namespace: "tick-kill" },
        plans: [{ type: "persistentVolumeClaim", namespaceSelector: { matchLabels: { "walle.test/faults": "tick-kill" } } }],
      },
    });
    onTestFinished(async () => {
      await on.api.delete("/apis/ros.io/v1/backupschedules/tick-kill").catch(() => {});
    });

    // The tick, as its Job runs it, killed (SIGKILL) the moment its BackupSet appears: it has started the run and
    // not finished making it.
    const command = await tickCommand({ admin: on.api, stateDir, args: ["--no-resync"] });
    const [bin = process.execPath, ...args] = command.argv;
    const tick = spawn(bin, args, { env: command.env, stdio: "ignore" });
    const ended = new Promise<string | null>((resolve) => tick.once("exit", (_code, signal) => resolve(signal)));
    // Every state the run's set is seen in, from its creation on: it must never read finished short of 40.
    const seen: { state?: string; completions?: string }[] = [];
    const sets = new Informer<KubeObject & { status?: { state?: string; completions?: string } }>(
      on.api,
      "/apis/ros.io/v1/backupsets",
      (_type, obj) => {
        tick.kill("SIGKILL");
        if (obj.status) seen.push(obj.status);
      },
      { labelSelector: `${Label.BackupSchedule}=tick-kill` },
    );
    await sets.start();
    onTestFinished(() => sets.stop());
    expect(await ended).toBe("SIGKILL");
    const jobsOf = async () =>
      (await on.api.get<{ items: (BackupJobObj & { spec: { sourcePvc: string } })[] }>("/apis/ros.io/v1/namespaces/tick-kill/backupjobs")).items;
    const atKill = (await jobsOf()).length;
    expect(atKill).toBeLessThan(pvcs.length);
    // Those it made are backed up meanwhile, and the set waits for the rest: it said it makes 40.
    await waitFor(async () => (await jobsOf()).every((j) => j.status?.phase === "Finished"), "the BackupJobs made before the kill to finish", 300_000);
    type SetObj = { metadata: { name: string; annotations?: Record<string, string> }; status?: { state?: string; completions?: string } };
    const setOf = async () =>
      (await on.api.get<{ items: SetObj[] }>("/apis/ros.io/v1/backupsets", { labelSelector: `${Label.BackupSchedule}=tick-kill` })).items[0];
    const waiting = await waitFor(
      async () => {
        const s = await setOf();
        return s?.status?.completions === `${atKill}/${pvcs.length}` && s;
      },
      `the set to count ${atKill} of ${pvcs.length}`,
      60_000,
    );
    expect(waiting.status?.state).toBe("Running");
    expect(waiting.metadata.annotations).toMatchObject({ "ros.io/backup-jobs": String(pvcs.length) });

    // The next ticks (KEDA's window runs it again) find the run due still, and make what is missing.
    ticking(10_000);
    const set = await waitFor(
      async () => {
        const s = await setOf();
        return s && ["Finished", "FinishedWithFailures"].includes(s.status?.state ?? "") && s;
      },
      "the run to end",
      300_000,
    ).catch(async (err: unknown) => {
      const sets = await on.api.get<{ items: SetObj[] }>("/apis/ros.io/v1/backupsets");
      const phases = (await jobsOf()).map((j) => `${j.metadata.name} ${j.status?.phase ?? "-"}`);
      throw new Error(
        `${String(err)}\nsets: ${JSON.stringify(sets.items.map((x) => [x.metadata.name, x.status]))}\nkilled with ${atKill} BackupJobs; now: ${phases.join(", ")}`,
        { cause: err },
      );
    });
    expect(set.status).toMatchObject({ state: "Finished", completions: `${pvcs.length}/${pvcs.length}` });
    const endings = seen.filter((st) => st.state !== "Running");
    expect(endings.length).toBeGreaterThan(0);
    expect(new Set(endings.map((st) => `${st.state} ${st.completions}`))).toEqual(new Set([`Finished ${pvcs.length}/${pvcs.length}`]));
    const jobs = await jobsOf();
    expect(jobs.map((j) => j.spec.sourcePvc).sort()).toEqual([...pvcs].sort());
    expect(jobs.every((j) => j.status?.phase === "Finished")).toBe(true);
    const snapshots = JSON.parse(await restic(["snapshots", "--json", "--no-lock"], { RESTIC_REPOSITORY: repository, RESTIC_PASSWORD: PASSWORD })) as {
      tags: string[];
    }[];
    expect(snapshots.map((s) => s.tags.find((t) => t.startsWith("pvc="))).sort()).toEqual(pvcs.map((p) => `pvc=${p}`).sort());
    expect(await restic(["check"], { RESTIC_REPOSITORY: repository, RESTIC_PASSWORD: PASSWORD })).toMatch(/no errors were found/);
    await expectNoLeftovers(["tick-kill"], before, on);
  }, 600_000);
});

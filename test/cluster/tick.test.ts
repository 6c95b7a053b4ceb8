// The tick on the real control plane, run as its own service account, with `--now` stepping through time:
// schedules become BackupSets and BackupJobs (one per due slot, however often it ticks), history stays bounded,
// suspend holds new runs, prune keeps what the policy says, and in-flight work whose events were all lost still
// ends, through ticks alone; a worker killed mid-backup leaves a lock the next prune removes.
import { randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { applyObjects, readManifestFiles } from "../../cluster/index.ts";
import { repoRoot } from "../../cluster/toolchain.ts";
import type { BackupScheduleStatus } from "../../lib/api/backup-schedule.ts";
import type { BackupSetStatus } from "../../lib/api/backup-set.ts";
import { listSnapshots, restic, startRestServer, tempDir, type RestServer } from "../integration/worker-harness.ts";
import { backupJobChildNames } from "../../lib/core/names.ts";
import { workerHostname } from "../../lib/restic/locks.ts";
import { csiStorage, expectNoLeftovers, names, PASSWORD, pvcWithData, repositorySecret, settled, type BackupJobObj } from "../support/backup-fixtures.ts";
import { admin, containerProcesses, createNamespace, killContainer, waitFor } from "../support/kube.ts";
import { runTick } from "../support/tick.ts";
import { CLUSTER_NAME, startWalle } from "../support/walle.ts";

const USER = "tick";
const ROS = "/apis/ros.io/v1";
let rest: RestServer;
let restData: string;

beforeAll(async () => {
  restData = await tempDir("rest-tick");
  rest = await startRestServer({ dataDir: restData, users: { [USER]: "rest-secret" } });
});
afterAll(async () => rest?.stop());

interface Schedule {
  metadata: { name: string; creationTimestamp: string; resourceVersion: string };
  status?: BackupScheduleStatus;
}
interface BackupSetObj {
  metadata: { name: string; labels?: Record<string, string>; ownerReferences?: { kind: string; name: string }[] };
  status?: BackupSetStatus;
}

async function createSchedule(name: string, spec: Record<string, unknown>): Promise<Schedule> {
  const made = await admin().create<Schedule>(`${ROS}/backupschedules`, { apiVersion: "ros.io/v1", kind: "BackupSchedule", metadata: { name }, spec });
  deleteAtEnd(`${ROS}/backupschedules/${name}`);
  return made;
}

/** Deletes `pathname` when the test ends, whatever became of it. */
function deleteAtEnd(pathname: string): void {
  onTestFinished(async () => {
    await admin()
      .delete(pathname)
      .catch(() => {});
  });
}

const getSchedule = (name: string) => admin().get<Schedule>(`${ROS}/backupschedules/${name}`);
async function setsOf(schedule: string): Promise<BackupSetObj[]> {
  return (await admin().get<{ items: BackupSetObj[] }>(`${ROS}/backupsets`, { labelSelector: `ros.io/backup-schedule=${schedule}` })).items;
}
async function jobsOfSet(set: string): Promise<BackupJobObj[]> {
  return (await admin().get<{ items: BackupJobObj[] }>(`${ROS}/backupjobs`, { labelSelector: `ros.io/backupset=${set}` })).items;
}
async function settledSet(name: string, timeoutMs = 120_000): Promise<BackupSetObj> {
  return waitFor(
    async () => {
      const s = await admin().get<BackupSetObj>(`${ROS}/backupsets/${name}`);
      return s.status?.state === "Finished" || s.status?.state === "FinishedWithFailures" ? s : undefined;
    },
    `BackupSet ${name} to finish`,
    timeoutMs,
  );
}

/** What the BackupJobs of a set say about how they ended, for an assertion's message. */
async function whyFailed(set: string): Promise<string> {
  const jobs = await jobsOfSet(set);
  return jobs
    .map((j) => `${j.metadata.namespace}/${j.metadata.name}: ${j.status?.phase} ${j.status?.conditions?.find((c) => c.type === "BackupState")?.message ?? ""}`)
    .join("\n");
}

/** A pod the local node shows Running, mounting `claims`. */
async function pod(ns: string, name: string, labels: Record<string, string>, claims: string[]): Promise<void> {
  await admin().create(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels },
    spec: {
      containers: [
        { name: "app", image: "busybox:1.36", command: ["sleep", "infinity"], volumeMounts: claims.map((c) => ({ name: c, mountPath: `/mnt/${c}` })) },
      ],
      volumes: claims.map((c) => ({ name: c, persistentVolumeClaim: { claimName: c } })),
    },
  });
}

/**
 * A namespace for one test: PVC `db` holding a file, mounted by pod `db-0` (labelled app=db), and Secret `repo` for
 * a fresh repository; `name` is the test's schedule name.
 */
async function dbNamespace(prefix: string): Promise<{ ns: string; repo: string; name: string }> {
  const ns = await createNamespace(prefix);
  await pvcWithData(ns, "db", { "rows.db": "rows" });
  await pod(ns, "db-0", { app: "db" }, ["db"]);
  const repo = rest.repository(USER, "rest-secret", `${prefix}-${ns}`);
  await repositorySecret(ns, "repo", repo);
  return { ns, repo, name: `${prefix}-${ns}` };
}

/** A schedule confined to one namespace by the original's field selector, backing up pods labelled app=db. */
function dbPlan(ns: string) {
  return [{ type: "pod", labelSelector: { matchLabels: { app: "db" } }, fieldSelector: [{ field: "metadata.namespace", operator: "equals", value: ns }] }];
}

const tickOk = async (opts: Parameters<typeof runTick>[0] = {}) => {
  const run = await runTick(opts);
  expect({ code: run.code, errors: run.report?.errors, stderr: run.code === 0 ? "" : run.stderr }).toEqual({ code: 0, errors: [], stderr: "" });
  return run;
};

describe("the tick", () => {
  it("runs the original README's getting-started schedule, as written: every PVC a pod mounts, and nothing else", async () => {
    // Namespaces of earlier tests still being deleted hold pods this cluster-wide schedule would see.
    await waitFor(
      async () => {
        const list = await admin().get<{ items: { status?: { phase?: string } }[] }>("/api/v1/namespaces");
        return list.items.every((n) => n.status?.phase !== "Terminating");
      },
      "no namespace Terminating",
      120_000,
    );
    await startWalle();
    await admin()
      .create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "walle" } })
      .catch(() => {});
    deleteAtEnd("/api/v1/namespaces/walle");
    const repo = rest.repository(USER, "rest-secret", "getting-started");
    await repositorySecret("walle", "restic-repo", repo);
    const ns = await createNamespace("shop");
    await pvcWithData(ns, "db", { "rows.db": "rows" });
    await pvcWithData(ns, "uploads", { "a.png": "png" });
    await pvcWithData(ns, "unmounted", { x: "x" });
    await admin().create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "pending" },
      spec: { storageClassName: "no-such-class", accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    });
    await pod(ns, "db-0", { app: "db" }, ["db"]);
    await pod(ns, "web-0", { app: "web" }, ["db", "uploads"]);
    await pod(ns, "web-1", { app: "web" }, ["pending"]);
    await applyObjects(admin(), await readManifestFiles([path.join(repoRoot, "examples", "getting-started-schedule.yml")]));
    deleteAtEnd(`${ROS}/backupschedules/example-schedule`);

    const first = await tickOk();
    const [set, ...more] = await setsOf("example-schedule");
    expect(more).toEqual([]);
    expect(set?.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: "BackupSchedule", name: "example-schedule" })]);
    expect(first.report?.actions).toContain(`create BackupSet ${set?.metadata.name}`);

    const jobs = await jobsOfSet(set?.metadata.name ?? "");
    const mine = jobs
      .filter((j) => j.metadata.namespace === ns)
      .map((j) => (j as unknown as { spec: { sourcePvc: string } }).spec.sourcePvc)
      .sort();
    expect(mine).toEqual(["db", "uploads"]);
    // Nothing else: every BackupJob, in any namespace, is of a PVC that some pod there mounts.
    const pods = await admin().get<{
      items: { metadata: { namespace: string; labels?: Record<string, string> }; spec: { volumes?: { persistentVolumeClaim?: { claimName: string } }[] } }[];
    }>("/api/v1/pods");
    const mounted = new Set(
      pods.items
        .filter((p) => p.metadata.labels?.["app.kubernetes.io/created-by"] !== "walle")
        .flatMap((p) =>
          (p.spec.volumes ?? []).flatMap((v) => (v.persistentVolumeClaim ? [`${p.metadata.namespace}/${v.persistentVolumeClaim.claimName}`] : [])),
        ),
    );
    for (const j of jobs) expect(mounted.has(`${j.metadata.namespace}/${(j as unknown as { spec: { sourcePvc: string } }).spec.sourcePvc}`)).toBe(true);

    const done = await settledSet(set?.metadata.name ?? "", 180_000);
    expect(done.status, await whyFailed(set?.metadata.name ?? "")).toMatchObject({ state: "Finished", completions: `${jobs.length}/${jobs.length}` });
    const snapshots = await listSnapshots({ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD });
    expect(
      snapshots
        .filter((s) => s.tags?.includes(`namespace=${ns}`))
        .map((s) => s.tags?.find((t) => t.startsWith("pvc=")))
        .sort(),
    ).toEqual(["pvc=db", "pvc=uploads"]);
    expect(snapshots.every((s) => s.tags?.includes("schedule=example-schedule"))).toBe(true);

    await tickOk();
    const schedule = await getSchedule("example-schedule");
    expect(schedule.status).toMatchObject({
      state: "Finished",
      lastBackupRun: expect.any(String),
      conditions: expect.arrayContaining([expect.objectContaining({ type: "BackupReady", status: "True" })]),
    });
    expect(Date.parse(schedule.status?.nextBackupRun ?? "") - Date.parse(schedule.status?.scheduler?.backupTimestamp ?? "")).toBe(6 * 3600 * 1000);
    const events = await admin().get<{ items: { reason: string; note: string; regarding: { name: string } }[] }>(
      "/apis/events.k8s.io/v1/namespaces/walle-system/events",
    );
    const notes = events.items.filter((e) => e.regarding.name === "example-schedule");
    expect(notes.map((e) => e.reason)).toEqual(expect.arrayContaining(["BackupStarted", "PvcSkipped"]));
    expect(notes.find((e) => e.reason === "PvcSkipped" && e.note.includes(`${ns}/pending`))?.note).toBe(
      `Skipped PVC ${ns}/pending: the PVC is Pending, not Bound.`,
    );
  });

  it("makes one BackupSet when it ticks twice at one instant or ten times in one KEDA window; --dry-run makes none", async () => {
    const { ns, name } = await dbNamespace("window");
    const made = await createSchedule(name, { interval: "1h", plans: dbPlan(ns), repository: { name: "repo", namespace: ns } });
    const t0 = Date.parse(made.metadata.creationTimestamp) + 3 * 3600 * 1000 + 30_000;

    const dry = await tickOk({ now: new Date(t0), dryRun: true });
    expect(dry.stdout).toContain(`would create BackupSet ${name}-`);
    expect(dry.stdout).toContain(`would create BackupJob ${ns}/${name}-`);
    expect(await setsOf(name)).toEqual([]);
    expect((await getSchedule(name)).status).toBeUndefined();

    await tickOk({ now: new Date(t0) });
    await tickOk({ now: new Date(t0) });
    for (let i = 1; i <= 10; i++) await tickOk({ now: new Date(t0 + i * 6_000) });
    const sets = await setsOf(name);
    expect(sets.map((s) => s.metadata.name)).toHaveLength(1);
    expect((await jobsOfSet(sets[0]?.metadata.name ?? "")).map((j) => j.metadata.namespace)).toEqual([ns]);
  });

  it("fires a cron schedule in America/New_York at the right instants across the spring DST change", async () => {
    const ns = await createNamespace("dst");
    const name = `dst-${ns}`;
    // Nothing to back up, so each due slot only moves the scheduler on (a NothingToBackUp Event), tick by tick.
    await createSchedule(name, {
      schedule: "0 9 * * *",
      timezone: "America/New_York",
      plans: [{ type: "persistentVolumeClaim", fieldSelector: [{ field: "metadata.namespace", operator: "equals", value: ns }] }],
      repository: { name: "repo", namespace: ns },
    });
    await admin().patch(`${ROS}/backupschedules/${name}/status`, { status: { scheduler: { backupTimestamp: "2026-03-06T14:00:00Z" } } });
    const fired: string[] = [];
    // 2026-03-08 02:00 EST → 03:00 EDT: 09:00 local is 14:00Z before, 13:00Z after.
    for (const at of [
      "2026-03-07T13:59:00Z",
      "2026-03-07T14:03:00Z",
      "2026-03-08T12:58:00Z",
      "2026-03-08T13:02:00Z",
      "2026-03-08T14:02:00Z",
      "2026-03-09T13:01:00Z",
    ]) {
      await tickOk({ now: at, schedule: name });
      const ts = (await getSchedule(name)).status?.scheduler?.backupTimestamp ?? "";
      if (fired.at(-1) !== ts) fired.push(ts);
    }
    expect(fired).toEqual(["2026-03-06T14:00:00Z", "2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z", "2026-03-09T13:00:00Z"]);
    expect((await getSchedule(name)).status?.nextBackupRun).toBe("2026-03-10T13:00:00Z");
  });

  it("after 3 days down on a 6h schedule, runs exactly once", async () => {
    const { ns, name } = await dbNamespace("downtime");
    const made = await createSchedule(name, { interval: "6h", plans: dbPlan(ns), repository: { name: "repo", namespace: ns }, suspend: true });
    const created = Date.parse(made.metadata.creationTimestamp);
    // The last run was right at creation; the schedule then sat unattended for 3 days.
    await admin().patch(`${ROS}/backupschedules/${name}/status`, {
      status: { scheduler: { backupTimestamp: new Date(Math.floor(created / 1000) * 1000).toISOString().replace(".000", "") } },
    });
    await admin().patch(`${ROS}/backupschedules/${name}`, { spec: { suspend: false } });
    const later = created + 3 * 24 * 3600 * 1000 + 3600 * 1000;
    await tickOk({ now: new Date(later) });
    await tickOk({ now: new Date(later + 5 * 60_000) });
    await tickOk({ now: new Date(later + 2 * 3600 * 1000) });
    const sets = await setsOf(name);
    expect(sets).toHaveLength(1);
    const status = (await getSchedule(name)).status;
    expect(Date.parse(status?.scheduler?.backupTimestamp ?? "")).toBe(Math.floor(created / 1000) * 1000 + 12 * 6 * 3600 * 1000);
  });

  it("keeps keepSucceeded 1 and keepFailed 3 over 10 runs with mixed outcomes", async () => {
    await startWalle();
    const { ns, name } = await dbNamespace("history");
    const made = await createSchedule(name, {
      interval: "1h",
      keepSucceeded: 1,
      keepFailed: 3,
      plans: dbPlan(ns),
      repository: { name: "repo", namespace: ns },
    });
    const created = Date.parse(made.metadata.creationTimestamp);
    const outcomes = ["ok", "fail", "fail", "ok", "fail", "ok", "fail", "fail", "ok", "fail"] as const;
    const finished: { name: string; state: string }[] = [];
    for (const [i, outcome] of outcomes.entries()) {
      const error = outcome === "fail" ? "the storage backend is out of space" : null;
      await admin().patch(`/api/v1/namespaces/${ns}/persistentvolumeclaims/db`, { metadata: { annotations: { "local.walle.dev/snapshot-error": error } } });
      const run = await tickOk({ now: new Date(created + i * 3600 * 1000 + 1000) });
      const setName = run.report?.actions.find((a) => a.startsWith("create BackupSet "))?.slice("create BackupSet ".length);
      expect(setName, `run ${i}`).toBeDefined();
      const done = await settledSet(setName ?? "");
      if (outcome === "ok") expect(done.status?.state, await whyFailed(setName ?? "")).toBe("Finished");
      finished.push({ name: setName ?? "", state: done.status?.state ?? "" });
    }
    expect(finished.map((f) => f.state)).toEqual(outcomes.map((o) => (o === "ok" ? "Finished" : "FinishedWithFailures")));
    await tickOk({ now: new Date(created + 10 * 3600 * 1000 - 1000) });
    const kept = (await setsOf(name)).map((s) => s.metadata.name).sort();
    const newest = [...finished].reverse();
    const expected = [...newest.filter((f) => f.state === "Finished").slice(0, 1), ...newest.filter((f) => f.state === "FinishedWithFailures").slice(0, 3)]
      .map((f) => f.name)
      .sort();
    expect(kept).toEqual(expected);
    // The deleted runs' BackupJobs went with them.
    await waitFor(async () => (await names(`${ROS}/namespaces/${ns}/backupjobs`)).length === 4, "BackupJobs of deleted sets to go");
  }, 600_000);

  it("backs up 8 PVCs into a new repository with one restic init", async () => {
    await startWalle();
    const ns = await createNamespace("eight");
    const pvcs = Array.from({ length: 8 }, (_, i) => `data-${i}`);
    for (const p of pvcs) await pvcWithData(ns, p, { [`${p}.txt`]: p });
    await pod(ns, "db-0", { app: "db" }, pvcs);
    const repo = rest.repository(USER, "rest-secret", `eight-${ns}`);
    await repositorySecret(ns, "repo", repo);
    const name = `eight-${ns}`;
    await createSchedule(name, { interval: "6h", plans: dbPlan(ns), repository: { name: "repo", namespace: ns } });
    const run = await tickOk();
    const setName = run.report?.actions.find((a) => a.startsWith("create BackupSet "))?.slice("create BackupSet ".length) ?? "";
    const done = await settledSet(setName, 240_000);
    expect(done.status, await whyFailed(setName)).toMatchObject({ state: "Finished", completions: "8/8" });
    const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
    // Two inits racing would each have written a key; one init wrote one.
    expect(JSON.parse(await restic(["key", "list", "--json", "--no-lock"], env))).toHaveLength(1);
    expect(await listSnapshots(env)).toHaveLength(8);
  }, 300_000);

  it("suspend stops new runs without touching the running one", async () => {
    const { ns, name } = await dbNamespace("suspend");
    const made = await createSchedule(name, { interval: "1h", plans: dbPlan(ns), repository: { name: "repo", namespace: ns } });
    const created = Date.parse(made.metadata.creationTimestamp);
    const run = await tickOk({ now: new Date(created + 1000) });
    const setName = run.report?.actions.find((a) => a.startsWith("create BackupSet "))?.slice("create BackupSet ".length) ?? "";
    await admin().patch(`${ROS}/backupschedules/${name}`, { spec: { suspend: true } });
    await startWalle();
    for (const hours of [2, 3, 4]) await tickOk({ now: new Date(created + hours * 3600 * 1000) });
    expect((await setsOf(name)).map((s) => s.metadata.name)).toEqual([setName]);
    expect((await settledSet(setName)).status?.state).toBe("Finished");
    const status = (await getSchedule(name)).status;
    expect(status?.nextBackupRun).toBeUndefined();
  });

  it("drives a BackupJob whose events were all dropped to Finished through ticks alone", async () => {
    const { ns, repo, name } = await dbNamespace("noevents");
    await createSchedule(name, { interval: "6h", plans: dbPlan(ns), repository: { name: "repo", namespace: ns } });
    // No reconcile function runs: nothing but the tick moves anything.
    let ticks = 0;
    const bj = await waitFor(
      async () => {
        await tickOk();
        ticks++;
        const [set] = await setsOf(name);
        const [job] = set ? await jobsOfSet(set.metadata.name) : [];
        const cleaned = job?.status?.conditions?.some((c) => c.type === "CleanedUp" && c.status === "True");
        return job && (job.status?.phase === "Finished" || job.status?.phase === "Failed") && cleaned ? job : undefined;
      },
      "the BackupJob to settle through ticks",
      180_000,
    );
    expect(bj.status?.phase).toBe("Finished");
    expect(ticks).toBeGreaterThan(2);
    const [set] = await setsOf(name);
    await tickOk();
    expect((await admin().get<BackupSetObj>(`${ROS}/backupsets/${set?.metadata.name}`)).status).toMatchObject({ state: "Finished", completions: "1/1" });
    expect((await listSnapshots({ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD })).map((s) => s.id)).toEqual([bj.status?.snapshotId]);
  });

  it("fails a snapshot that never becomes ready at its deadline, through ticks alone, saying where it stuck", async () => {
    const ns = await createNamespace("stuck");
    const driver = `stuck-${ns}.csi.example.com`;
    await admin().create("/apis/storage.k8s.io/v1/storageclasses", {
      apiVersion: "storage.k8s.io/v1",
      kind: "StorageClass",
      metadata: { name: `stuck-${ns}` },
      provisioner: driver,
    });
    deleteAtEnd(`/apis/storage.k8s.io/v1/storageclasses/stuck-${ns}`);
    await admin().create("/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses", {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshotClass",
      metadata: { name: `stuck-${ns}`, annotations: { "snapshot.storage.kubernetes.io/is-default-class": "true" } },
      driver,
      deletionPolicy: "Delete",
    });
    deleteAtEnd(`/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses/stuck-${ns}`);
    // A volume of a driver that never answers: bound by hand, as a pre-provisioned PV is.
    await admin().create("/api/v1/persistentvolumes", {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: `stuck-${ns}` },
      spec: {
        capacity: { storage: "1Gi" },
        accessModes: ["ReadWriteOnce"],
        storageClassName: `stuck-${ns}`,
        csi: { driver, volumeHandle: `vol-${ns}` },
        claimRef: { namespace: ns, name: "db" },
      },
    });
    deleteAtEnd(`/api/v1/persistentvolumes/stuck-${ns}`);
    await admin().create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "db" },
      spec: { storageClassName: `stuck-${ns}`, volumeName: `stuck-${ns}`, accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    });
    await waitFor(
      async () => (await admin().get<{ status?: { phase?: string } }>(`/api/v1/namespaces/${ns}/persistentvolumeclaims/db`)).status?.phase === "Bound",
      "PVC Bound",
    );
    await pod(ns, "db-0", { app: "db" }, ["db"]);
    await repositorySecret(ns, "repo", rest.repository(USER, "rest-secret", `stuck-${ns}`));
    const name = `stuck-${ns}`;
    await createSchedule(name, { interval: "6h", plans: dbPlan(ns), repository: { name: "repo", namespace: ns } });
    const env = { WALLE_SNAPSHOT_TIMEOUT_SECONDS: "5" };
    await tickOk({ env });
    const [set] = await setsOf(name);
    const [job] = await jobsOfSet(set?.metadata.name ?? "");
    expect(job?.status?.phase).toBe("CreatingSnapshot");
    const failed = await waitFor(
      async () => {
        await tickOk({ env });
        const bj = await admin().get<BackupJobObj>(`${ROS}/namespaces/${ns}/backupjobs/${job?.metadata.name}`);
        return bj.status?.phase === "Failed" ? bj : undefined;
      },
      "the stuck BackupJob to fail",
      60_000,
    );
    expect(failed.status?.conditions?.find((c) => c.type === "BackupState")).toMatchObject({
      reason: "SnapshotTimeout",
      message: expect.stringMatching(/^Stuck in CreatingSnapshot: VolumeSnapshot .* was not ready within 5 s\.$/),
    });
    const [after] = await setsOf(name);
    await tickOk({ env });
    expect((await admin().get<BackupSetObj>(`${ROS}/backupsets/${after?.metadata.name}`)).status).toMatchObject({
      state: "FinishedWithFailures",
      completions: "0/1",
    });
  });

  it("prunes to exactly what the retention policy keeps, never while a worker uses the repository", async () => {
    await startWalle();
    const { ns, repo, name } = await dbNamespace("prune");
    const made = await createSchedule(name, {
      interval: "1h",
      plans: dbPlan(ns),
      repository: { name: "repo", namespace: ns },
      keepSucceeded: 10,
      prune: { interval: "4h", retain: { last: 2 } },
    });
    const created = Date.parse(made.metadata.creationTimestamp);
    const runAt = async (at: Date) => {
      const run = await tickOk({ now: at, schedule: name });
      const setName = run.report?.actions.find((a) => a.startsWith("create BackupSet "))?.slice("create BackupSet ".length) ?? "";
      expect((await settledSet(setName)).status?.state, await whyFailed(setName)).toBe("Finished");
      return setName;
    };
    for (let i = 0; i < 4; i++) await runAt(new Date(created + i * 3600 * 1000 + 1000));

    // Someone else's worker holds the repository: a real Job of Walle's labelled with it, still running.
    await admin().create(`/apis/batch/v1/namespaces/${ns}/jobs`, {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: {
        name: "walle-backup-other",
        labels: { "app.kubernetes.io/created-by": "walle", "ros.io/backup-job-type": "backup", "ros.io/repository": "repo" },
      },
      spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "w", image: "busybox:1.36", command: ["sleep", "infinity"] }] } } },
    });
    // Backup and prune both come due at 4h: the backup runs, the prune waits for it and for the other worker.
    const dueAt = new Date(created + 4 * 3600 * 1000 + 60_000);
    const fifth = await runAt(dueAt);
    await tickOk({ now: dueAt, schedule: name });
    expect(await names(`/apis/batch/v1/namespaces/${ns}/jobs`, "ros.io/backup-job-type=prune")).toEqual([]);
    expect((await getSchedule(name)).status?.conditions).toContainEqual(expect.objectContaining({ type: "PruneOk", reason: "RepositoryBusy" }));
    const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
    const before = await listSnapshots(env);
    expect(before).toHaveLength(5);

    await admin().delete(`/apis/batch/v1/namespaces/${ns}/jobs/walle-backup-other`, {
      apiVersion: "v1",
      kind: "DeleteOptions",
      propagationPolicy: "Background",
    });
    await waitFor(async () => (await names(`/apis/batch/v1/namespaces/${ns}/jobs`, "ros.io/backup-job-type=backup")).length === 0, "the other worker Job gone");
    await tickOk({ now: dueAt, schedule: name });
    const [prune] = await names(`/apis/batch/v1/namespaces/${ns}/jobs`, "ros.io/backup-job-type=prune");
    expect(prune).toBeDefined();
    const pruneOk = await waitFor(
      async () => {
        await tickOk({ now: dueAt, schedule: name });
        return (await getSchedule(name)).status?.conditions?.find((c) => c.type === "PruneOk" && c.reason !== "Running");
      },
      "the prune to end",
      120_000,
    );
    expect(pruneOk).toMatchObject({ status: "True", reason: "Finished" });
    // Kept: exactly the two newest, by the policy `last: 2`.
    const newest = [...before]
      .sort((a, b) => Date.parse(b.time) - Date.parse(a.time))
      .slice(0, 2)
      .map((s) => s.id)
      .sort();
    expect((await listSnapshots(env)).map((s) => s.id).sort()).toEqual(newest);
    // It started only after the fifth backup's worker had finished.
    const pruneJob = await admin().get<{ status?: { startTime?: string } }>(`/apis/batch/v1/namespaces/${ns}/jobs/${prune}`);
    const [fifthJob] = await jobsOfSet(fifth);
    expect(Date.parse(pruneJob.status?.startTime ?? "")).toBeGreaterThanOrEqual(Date.parse(fifthJob?.status?.finishTime ?? "") - 1000);
  }, 300_000);

  it("a worker killed mid-backup: its Job's next attempt Finishes, and the next prune removes the lock it left", async () => {
    await startWalle();
    const before = await csiStorage();
    const ns = await createNamespace("killed");
    // Data that neither compresses nor deduplicates, so restic is still reading it well after taking its lock.
    await pvcWithData(ns, "db", { "rows.db": randomBytes(192 * 1024 * 1024) });
    await pod(ns, "db-0", { app: "db" }, ["db"]);
    const repoName = `killed-${ns}`;
    const repo = rest.repository(USER, "rest-secret", repoName);
    await repositorySecret(ns, "repo", repo);
    const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD };
    const lockFiles = async () => (await readdir(path.join(restData, USER, repoName, "locks")).catch(() => [])).filter((f) => !f.startsWith("."));
    const name = `killed-${ns}`;
    const made = await createSchedule(name, {
      interval: "24h",
      plans: dbPlan(ns),
      repository: { name: "repo", namespace: ns },
      prune: { interval: "1h", retain: { last: 3 } },
    });

    const run = await tickOk({ schedule: name });
    const setName = run.report?.actions.find((a) => a.startsWith("create BackupSet "))?.slice("create BackupSet ".length) ?? "";
    const [bj] = await waitFor(async () => {
      const jobs = await jobsOfSet(setName);
      return jobs.length > 0 ? jobs : undefined;
    }, "the run's BackupJob");
    // The worker's container, the moment its restic holds the repository's lock: every process of it SIGKILLed.
    type PodObj = { metadata: { uid: string }; status?: { phase?: string; containerStatuses?: { containerID?: string; state?: { running?: object } }[] } };
    const workerPods = async () =>
      (await admin().get<{ items: PodObj[] }>(`/api/v1/namespaces/${ns}/pods`, { labelSelector: `ros.io/backup-job=${bj?.metadata.name}` })).items;
    const target = await waitFor(
      async () => {
        const running = (await workerPods()).find((p) => p.status?.containerStatuses?.[0]?.state?.running);
        if (!running || (await lockFiles()).length === 0) return undefined;
        // restic itself still running (not only the worker around it): the lock is a live process's.
        const procs = await containerProcesses(running.metadata.uid, running.status?.containerStatuses?.[0]?.containerID ?? "");
        return procs.some((p) => p.comm === "restic") ? running : undefined;
      },
      "the worker's restic to hold the repository's lock",
      180_000,
    );
    const killed = await killContainer(target.metadata.uid, target.status?.containerStatuses?.[0]?.containerID ?? "");
    expect(killed).toContain("restic");

    const done = await settled(ns, bj?.metadata.name ?? "", 240_000);
    expect(done.status?.phase, JSON.stringify(done.status?.conditions)).toBe("Finished");
    expect((await settledSet(setName)).status).toMatchObject({ state: "Finished", completions: "1/1" });
    expect((await listSnapshots(env)).map((s) => s.id)).toEqual([done.status?.snapshotId]);
    // The killed attempt's lock is still there: another host to restic, and not yet 30 minutes old.
    const left = await lockFiles();
    expect(left).toHaveLength(1);
    const job = backupJobChildNames({ namespace: ns, name: bj?.metadata.name ?? "", uid: bj?.metadata.uid ?? "" }).job;
    expect(JSON.parse(await restic(["cat", "lock", left[0] ?? "", "--no-lock"], env))).toMatchObject({
      hostname: workerHostname(CLUSTER_NAME, job),
      exclusive: false,
    });

    // The next run that needs the repository to itself: the schedule's prune, an hour on, with no worker running.
    const dueAt = new Date(Date.parse(made.metadata.creationTimestamp) + 3600 * 1000 + 60_000);
    const started = await tickOk({ now: dueAt, schedule: name });
    const pruneJob = started.report?.actions.find((a) => a.startsWith(`create Job ${ns}/walle-prune-`))?.slice(`create Job ${ns}/`.length);
    expect(pruneJob, JSON.stringify(started.report?.actions)).toBeDefined();
    const pruneOk = await waitFor(
      async () => {
        await tickOk({ now: dueAt, schedule: name });
        return (await getSchedule(name)).status?.conditions?.find((c) => c.type === "PruneOk" && c.reason !== "Running");
      },
      "the prune to end",
      180_000,
    );
    expect(pruneOk).toMatchObject({ status: "True", reason: "Finished" });
    const [prunePod] = (
      await admin().get<{ items: { status?: { containerStatuses?: { state?: { terminated?: { message?: string } } }[] } }[] }>(
        `/api/v1/namespaces/${ns}/pods`,
        { labelSelector: `job-name=${pruneJob}` },
      )
    ).items;
    const result = JSON.parse(prunePod?.status?.containerStatuses?.[0]?.state?.terminated?.message ?? "{}") as { message?: string };
    expect(result.message).toMatch(/^Removed 1 stale lock first; forgot 0 snapshots and kept 1, and pruned the repository\.$/);
    expect(await lockFiles()).toEqual([]);
    expect(await restic(["check"], env)).toMatch(/no errors were found/);
    await admin().delete(`${ROS}/backupschedules/${name}`);
    await expectNoLeftovers([ns], before);
  }, 600_000);
});

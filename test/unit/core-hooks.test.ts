// Snapshot hooks as pure decisions: where they run, and the BackupJob's steps around them. Once a before-hook has
// started, the after-hook runs whatever else happens (a failed hook, a failed snapshot, an instance that stopped),
// and never twice.
import { describe, expect, it } from "vitest";
import type { BackupJobStatus } from "../../lib/api/backup-job.ts";
import { decideBackupJob, type BackupJobWorld } from "../../lib/core/backup-job.ts";
import { hookOutcome, hookOutput, planHooks, planStream } from "../../lib/core/hooks.ts";
import { backupJobChildNames } from "../../lib/core/names.ts";
import type { Pod, Pvc, VolumeSnapshot } from "../../lib/core/objects.ts";
import { testConfig as config } from "../support/config.ts";

const now = new Date("2026-11-26T10:00:00Z");
const job = {
  namespace: "shop",
  name: "db-backup",
  uid: "0b1c2d3e-aaaa-bbbb-cccc-000000000002",
  generation: 1,
  labels: {},
  creationTimestamp: "2026-11-26T09:59:00Z",
};
const names = backupJobChildNames(job);
const pvc: Pvc = {
  metadata: { name: "data", namespace: "shop" },
  spec: { storageClassName: "fast", resources: { requests: { storage: "1Gi" } } },
  status: { phase: "Bound", capacity: { storage: "1Gi" } },
};
const storageClass = { metadata: { name: "fast" }, provisioner: "csi.example.com" };
const snapshotClasses = [
  {
    metadata: { name: "snaps", annotations: { "snapshot.storage.kubernetes.io/is-default-class": "true" } },
    driver: "csi.example.com",
    deletionPolicy: "Delete" as const,
  },
];

function appPod(name: string, opts: { annotations?: Record<string, string>; phase?: string; claim?: string } = {}): Pod {
  return {
    metadata: { name, namespace: "shop", ...(opts.annotations ? { annotations: opts.annotations } : {}) },
    spec: {
      volumes: [{ name: "config", configMap: { name: "c" } } as never, { name: "pgdata", persistentVolumeClaim: { claimName: opts.claim ?? "data" } }],
      containers: [{ name: "exporter" }, { name: "postgres", volumeMounts: [{ name: "pgdata", mountPath: "/var/lib/postgresql/data" }] }],
    },
    status: { phase: opts.phase ?? "Running" },
  };
}

const spec = {
  sourcePvc: "data",
  repository: { name: "repo", namespace: "shop" },
  beforeSnapshot: "psql -c 'CHECKPOINT'; touch /var/lib/postgresql/data/.frozen",
  afterSnapshot: "rm /var/lib/postgresql/data/.frozen",
};
function world(status: BackupJobStatus, extra: Partial<BackupJobWorld> = {}, s: Partial<typeof spec> = spec): BackupJobWorld {
  return { job, spec: { sourcePvc: "data", repository: { name: "repo", namespace: "shop" }, ...s }, status, pvc, storageClass, snapshotClasses, ...extra };
}
const created = (d: ReturnType<typeof decideBackupJob>) =>
  d.actions.flatMap((a) => (a.op === "create" ? [`${a.manifest.kind} ${a.manifest.metadata.name}`] : []));
const targets = [{ pod: "db-0", container: "postgres" }];
const run = (command: string, extra: object = {}) => ({ command, from: "BackupJob" as const, targets, ...extra });

describe("planHooks", () => {
  it("runs the BackupJob's hooks in each running pod that mounts the PVC, in the first container that mounts it", () => {
    const plan = planHooks(spec, [appPod("db-1"), appPod("db-0"), appPod("pending", { phase: "Pending" }), appPod("other", { claim: "logs" })], "data", "shop");
    expect(plan).toEqual({
      hooks: {
        before: {
          command: spec.beforeSnapshot,
          from: "BackupJob",
          targets: [
            { pod: "db-0", container: "postgres" },
            { pod: "db-1", container: "postgres" },
          ],
        },
        after: {
          command: spec.afterSnapshot,
          from: "BackupJob",
          targets: [
            { pod: "db-0", container: "postgres" },
            { pod: "db-1", container: "postgres" },
          ],
        },
      },
    });
  });

  it("else the pods' ros.io/before-backup and ros.io/after-backup annotations, which must agree", () => {
    const annotated = appPod("db-0", { annotations: { "ros.io/before-backup": "sync", "ros.io/after-backup": "true" } });
    expect(planHooks({}, [annotated, appPod("db-1")], "data", "shop")).toEqual({
      hooks: { before: { command: "sync", from: "Annotation", targets }, after: { command: "true", from: "Annotation", targets } },
    });
    const other = appPod("db-1", { annotations: { "ros.io/before-backup": "fsfreeze" } });
    expect(planHooks({}, [annotated, other], "data", "shop")).toEqual({
      error:
        "The pods that mount PVC shop/data disagree on their ros.io/before-backup annotation (db-0, db-1); give them one command, or set it on the BackupJob.",
    });
  });

  it("a hook with no running pod to run in is none, and says so; no hooks at all, nothing", () => {
    expect(planHooks(spec, [appPod("db-0", { phase: "Succeeded" })], "data", "shop")).toEqual({
      hooks: undefined,
      note: "No running pod mounts PVC shop/data: its before and after-snapshot hook had nowhere to run.",
    });
    expect(planHooks({}, [appPod("db-0")], "data", "shop")).toEqual({ hooks: undefined });
  });

  it("the outcome over several containers, and their output, each tail headed by where it ran", () => {
    expect(
      hookOutcome([
        { exitCode: 0, timedOut: false },
        { exitCode: 0, timedOut: false },
      ]),
    ).toBe("Succeeded");
    expect(
      hookOutcome([
        { exitCode: 0, timedOut: false },
        { exitCode: 2, timedOut: false },
      ]),
    ).toBe("Failed");
    expect(hookOutcome([{ timedOut: true }, { exitCode: 2, timedOut: false }])).toBe("TimedOut");
    expect(
      hookOutput([
        { pod: "db-0", container: "postgres", exitCode: 3, output: "locked\n" },
        { pod: "db-1", container: "postgres", output: "", error: 'pods "db-1" not found' },
      ]),
    ).toBe('[db-0/postgres exit 3] locked\n[db-1/postgres] pods "db-1" not found');
  });
});

describe("a BackupJob with snapshot hooks", () => {
  it("runs the before-hook before it makes the snapshot, recording its start first", () => {
    const d = decideBackupJob(world({}, { pods: [appPod("db-0")] }), config, now);
    expect(created(d)).toEqual([]);
    expect(d.hook).toEqual({ which: "before", namespace: "shop", backupJob: "db-backup", targets, command: spec.beforeSnapshot, timeoutSeconds: 60 });
    expect(d.status.hooks).toEqual({ before: run(spec.beforeSnapshot, { startTime: "2026-11-26T10:00:00Z" }), after: run(spec.afterSnapshot) });
    expect(d.status.conditions?.find((c) => c.type === "Hooks")).toMatchObject({
      status: "False",
      reason: "HookRunning",
      message: "Running the before-snapshot hook in db-0/postgres.",
    });
    expect(d.requeueAfter).toBe(90);
  });

  it("makes the snapshot once the before-hook succeeded, and runs the after-hook once it is cut, before it is ready", () => {
    const before = run(spec.beforeSnapshot, {
      startTime: "2026-11-26T09:59:58Z",
      finishTime: "2026-11-26T09:59:59Z",
      outcome: "Succeeded",
      output: "[db-0/postgres exit 0] CHECKPOINT",
    });
    const d = decideBackupJob(world({ hooks: { before, after: run(spec.afterSnapshot) } }), config, now);
    expect(created(d)).toEqual([`VolumeSnapshot ${names.sourceSnapshot}`]);
    expect(d.hook).toBeUndefined();
    expect(d.events.map((e) => [e.type, e.reason])).toEqual([
      ["Normal", "HookSucceeded"],
      ["Normal", "CreatingSnapshot"],
    ]);
    expect(d.status.conditions?.find((c) => c.type === "Hooks")?.message).toBe(
      "The before-snapshot hook (from the BackupJob) succeeded in db-0/postgres. Output: [db-0/postgres exit 0] CHECKPOINT The after-snapshot hook is still to run.",
    );

    const cutting: VolumeSnapshot = {
      metadata: { name: names.sourceSnapshot, namespace: "shop" },
      spec: { source: { persistentVolumeClaimName: "data" } },
      status: { readyToUse: false, creationTime: "2026-11-26T09:59:59Z" },
    };
    const next = decideBackupJob(world({ ...d.status }, { sourceSnapshot: cutting }), config, now);
    expect(next.hook).toMatchObject({ which: "after", command: spec.afterSnapshot });
    expect(created(next)).toEqual([]);
    // Cut and not yet ready, with the after-hook done: the wait for the snapshot goes on as before.
    const after = { ...next.status.hooks?.after, finishTime: "2026-11-26T10:00:00Z", outcome: "Succeeded" as const };
    const waiting = decideBackupJob(
      world({ ...next.status, hooks: { ...next.status.hooks, after: { ...run(spec.afterSnapshot), ...after } } }, { sourceSnapshot: cutting }),
      config,
      now,
    );
    expect(waiting.hook).toBeUndefined();
    expect(waiting.status.phase).toBe("CreatingSnapshot");
    expect(waiting.status.conditions?.find((c) => c.type === "Hooks")).toMatchObject({ status: "True", reason: "HooksSucceeded" });
  });

  it("a before-hook that failed: the after-hook runs, then the BackupJob fails with the hook's output, and no snapshot is ever made", () => {
    const before = run(spec.beforeSnapshot, {
      startTime: "2026-11-26T09:59:58Z",
      finishTime: "2026-11-26T09:59:59Z",
      outcome: "Failed",
      output: "[db-0/postgres exit 2] psql: connection refused",
    });
    const first = decideBackupJob(world({ hooks: { before, after: run(spec.afterSnapshot) } }), config, now);
    expect(first.hook?.which).toBe("after");
    expect(created(first)).toEqual([]);
    expect(first.status.phase).toBeUndefined();
    const after = run(spec.afterSnapshot, {
      startTime: "2026-11-26T10:00:00Z",
      finishTime: "2026-11-26T10:00:00Z",
      outcome: "Succeeded",
      output: "[db-0/postgres exit 0]",
    });
    const last = decideBackupJob(world({ ...first.status, hooks: { before, after } }), config, now);
    expect(last.hook).toBeUndefined();
    expect(created(last)).toEqual([]);
    expect(last.status.phase).toBe("Failed");
    expect(last.status.conditions?.find((c) => c.type === "BackupState")).toMatchObject({
      reason: "BeforeHookFailed",
      message:
        "No snapshot was taken. The before-snapshot hook (from the BackupJob) failed in db-0/postgres. Output: [db-0/postgres exit 2] psql: connection refused",
    });
    expect(last.status.conditions?.find((c) => c.type === "Hooks")).toMatchObject({ status: "False", reason: "BeforeHookFailed" });
  });

  it("a hook another instance runs is waited for to its deadline; past it, it was interrupted, and the after-hook still runs, once", () => {
    const started = { before: run(spec.beforeSnapshot, { startTime: "2026-11-26T09:59:50Z" }), after: run(spec.afterSnapshot) };
    const wait = decideBackupJob(world({ hooks: started }), config, now);
    expect(wait).toMatchObject({ actions: [], requeueAfter: 80 });
    expect(wait.hook).toBeUndefined();
    const late = new Date("2026-11-26T10:01:30Z");
    const d = decideBackupJob(world({ hooks: started }), config, late);
    expect(d.status.hooks?.before).toMatchObject({ outcome: "Interrupted", finishTime: "2026-11-26T10:01:30Z" });
    expect(d.hook?.which).toBe("after");
    expect(d.events).toContainEqual(expect.objectContaining({ type: "Warning", reason: "HookFailed" }));
    // The after-hook, once started, is never started again: cut short too, it reads Interrupted and the job fails.
    const cut = decideBackupJob(world({ ...d.status }), config, new Date("2026-11-26T10:05:00Z"));
    expect(cut.hook).toBeUndefined();
    expect(cut.status.hooks?.after?.outcome).toBe("Interrupted");
    expect(cut.status.phase).toBe("Failed");
  });

  it("a failure after the cut (the worker failed) does not run the after-hook again", () => {
    const done = {
      before: run(spec.beforeSnapshot, { startTime: "2026-11-26T09:59:50Z", finishTime: "2026-11-26T09:59:51Z", outcome: "Succeeded" as const }),
      after: run(spec.afterSnapshot, { startTime: "2026-11-26T09:59:55Z", finishTime: "2026-11-26T09:59:56Z", outcome: "Succeeded" as const }),
    };
    const d = decideBackupJob(world({ phase: "BackingUp", startTime: "2026-11-26T09:59:52Z", hooks: done }, { workerJob: null }), config, now);
    expect(d.status.phase).toBe("Failed");
    expect(d.hook).toBeUndefined();
  });
});

describe("the Hooks condition", () => {
  it("keeps what ended while the next hook runs, so each end gets one Event", () => {
    const before = run("sync", { startTime: "2026-11-26T09:59:50Z", finishTime: "2026-11-26T09:59:51Z", outcome: "Succeeded" as const });
    const cut: VolumeSnapshot = {
      metadata: { name: names.sourceSnapshot, namespace: "shop" },
      spec: { source: { persistentVolumeClaimName: "data" } },
      status: { creationTime: "2026-11-26T09:59:58Z" },
    };
    const shown = {
      type: "Hooks",
      status: "False" as const,
      reason: "HookRunning",
      message: "The before-snapshot hook (from the BackupJob) succeeded in db-0/postgres. The after-snapshot hook is still to run.",
      lastTransitionTime: "2026-11-26T09:59:51Z",
    };
    const running = decideBackupJob(
      world(
        { phase: "CreatingSnapshot", startTime: "2026-11-26T09:59:52Z", hooks: { before, after: run("true") }, conditions: [shown] },
        { sourceSnapshot: cut },
      ),
      config,
      now,
    );
    expect(running.hook?.which).toBe("after");
    expect(running.events).toEqual([]);
    expect(running.status.conditions?.find((c) => c.type === "Hooks")?.message).toBe(
      "The before-snapshot hook (from the BackupJob) succeeded in db-0/postgres. Running the after-snapshot hook in db-0/postgres.",
    );
  });
});

describe("a BackupJob that backs up a command's output", () => {
  const streaming = { sourcePvc: "data", repository: { name: "repo", namespace: "shop" }, backupCommand: "pg_dump shop" };
  const withUrl = { ...config, progressSinkUrl: "http://10.0.0.1:8080/" };

  it("runs the BackupJob's backupCommand in the first running pod's first container that mounts the PVC; else a pod's annotation", () => {
    expect(planStream(streaming, [appPod("db-1"), appPod("db-0")], "data", "shop")).toEqual({
      stream: { command: "pg_dump shop", from: "BackupJob", pod: "db-0", container: "postgres", fileName: "data.postgres.stdout" },
    });
    expect(planStream({}, [appPod("db-0"), appPod("db-1", { annotations: { "ros.io/backup-command": "pg_dumpall" } })], "data", "shop")).toEqual({
      stream: { command: "pg_dumpall", from: "Annotation", pod: "db-1", container: "postgres", fileName: "data.postgres.stdout" },
    });
    expect(planStream({}, [appPod("db-0")], "data", "shop")).toBeUndefined();
    expect(planStream(streaming, [appPod("db-0", { phase: "Pending" })], "data", "shop")).toEqual({
      error: "No running pod mounts PVC shop/data: its backupCommand runs in the first container that mounts it.",
    });
  });

  it("starts its worker at once, with no snapshot, streaming from the function, when the repository has room", () => {
    const d = decideBackupJob(world({}, { pods: [appPod("db-0")], repositoryJobs: [] }, streaming), withUrl, now);
    expect(created(d)).toEqual(["ServiceAccount walle-worker", `Job ${names.job}`]);
    expect(d.status).toMatchObject({
      phase: "WaitingBackup",
      stream: { command: "pg_dump shop", pod: "db-0", container: "postgres", fileName: "data.postgres.stdout" },
    });
    const job = d.actions.find((a) => a.op === "create" && a.manifest.kind === "Job");
    const env = JSON.stringify(job?.op === "create" ? job.manifest : {});
    expect(env).toContain('{"name":"STREAM_URL","value":"http://10.0.0.1:8080/streams/shop/db-backup"}');
    expect(env).toContain('{"name":"STDIN_FILENAME","value":"data.postgres.stdout"}');
    expect(env).not.toContain("SOURCE_PATH");
    expect(env).not.toContain("persistentVolumeClaim");
    expect(d.status.conditions?.find((c) => c.type === "BackupState")?.message).toBe(
      "Backing up the output of backupCommand in db-0/postgres as data.postgres.stdout; no volume snapshot is taken.",
    );
  });

  it("fails, saying why, with no function URL for the worker to stream from, or no pod to run in", () => {
    const { progressSinkUrl: _, ...noSink } = config;
    const noUrl = decideBackupJob(world({}, { pods: [appPod("db-0")], repositoryJobs: [] }, streaming), noSink, now);
    expect(noUrl.status.phase).toBe("Failed");
    expect(noUrl.status.conditions?.find((c) => c.type === "BackupState")).toMatchObject({ reason: "StreamUnavailable" });
    const noPod = decideBackupJob(world({}, { pods: [], repositoryJobs: [] }, streaming), withUrl, now);
    expect(noPod.status.conditions?.find((c) => c.type === "BackupState")).toMatchObject({ reason: "NoCommandTarget" });
  });
});

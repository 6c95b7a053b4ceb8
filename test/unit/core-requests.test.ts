// Forced requests, worker progress, the progress throttle, and the resync's plan: pure decisions, by table.
import { describe, expect, it } from "vitest";
import { backupAccess, boundPod, describeAccess, notTheWorker, restoreAccess, RESYNC_ACCESS } from "../../lib/core/access.ts";
import { forcedBackupJob, forcedBackupRestore, isRefusal, progressStatus, progressSubject, type RestoreRequest } from "../../lib/core/requests.ts";
import { planResync, resyncReads } from "../../lib/core/sweep.ts";
import { Throttle } from "../../lib/core/throttle.ts";

const defaults = { installNamespace: "walle-system" };

describe("a forced backup", () => {
  it.each([
    ["its own namespace's repository", { namespace: "shop", pvc: "data", repository: { name: "r", namespace: "shop" } }, undefined],
    ["the install namespace's repository", { namespace: "shop", pvc: "data", repository: { name: "r" } }, undefined],
    ["another tenant's repository", { namespace: "shop", pvc: "data", repository: { name: "r", namespace: "bank" } }, "data.repository.namespace"],
    ["no repository, and no default", { namespace: "shop", pvc: "data" }, "data.repository"],
  ])("into %s", (_what, req, refusedAt) => {
    const made = forcedBackupJob(req, "event-1", defaults);
    if (refusedAt) {
      expect(isRefusal(made) && made.issues.map((i) => i.path)).toEqual([refusedAt]);
    } else {
      expect(isRefusal(made)).toBe(false);
      expect(made).toMatchObject({
        kind: "BackupJob",
        metadata: { namespace: "shop", annotations: { "ros.io/requested-by-event": "event-1" } },
        spec: { sourcePvc: "data" },
      });
    }
  });

  it("is named by the request's id, so a retried delivery names the same BackupJob", () => {
    const req = { namespace: "shop", pvc: "data", repository: { name: "r" } };
    const a = forcedBackupJob(req, "event-1", defaults);
    const b = forcedBackupJob(req, "event-1", defaults);
    const c = forcedBackupJob(req, "event-2", defaults);
    expect(!isRefusal(a) && !isRefusal(b) && !isRefusal(c) && [a.metadata.name === b.metadata.name, a.metadata.name === c.metadata.name]).toEqual([
      true,
      false,
    ]);
  });

  it("uses the default repository when the request names none", () => {
    const made = forcedBackupJob({ namespace: "shop", pvc: "data" }, "e", { ...defaults, defaultRepository: "shared" });
    expect(made).toMatchObject({ spec: { repository: { name: "shared", namespace: "walle-system" } } });
  });
});

const req: RestoreRequest = {
  namespace: "shop",
  repository: { name: "r", namespace: "walle-system" },
  source: { latest: { pvc: "data" } },
  target: { newPvc: { name: "n", size: "1Gi", accessModes: ["ReadWriteOnce"] } },
};

describe("a forced restore", () => {
  it("reads its own namespace's or the install namespace's repository, and no other tenant's", () => {
    expect(forcedBackupRestore(req, "e", defaults)).toMatchObject({
      kind: "BackupRestore",
      metadata: { namespace: "shop" },
      spec: { repository: { namespace: "walle-system" } },
    });
    expect(isRefusal(forcedBackupRestore({ ...req, repository: { name: "r", namespace: "shop" } }, "e", defaults))).toBe(false);
    expect(forcedBackupRestore({ ...req, repository: { name: "r", namespace: "web" } }, "e", defaults)).toMatchObject({
      refused: "data.repository.namespace must be shop (the target's) or walle-system",
      issues: [{ path: "data.repository.namespace" }],
    });
  });
});

describe("what a trigger needs of RBAC", () => {
  const backup = (repository?: { name: string; namespace?: string }) =>
    backupAccess({ namespace: "shop", pvc: "data", ...(repository ? { repository } : {}) }, defaults);
  it.each([
    {
      name: "a backup into its own namespace's repository",
      access: backup({ name: "r", namespace: "shop" }),
      want: ["create backupjobs.ros.io in namespace shop"],
    },
    {
      name: "a backup into a shared repository",
      access: backup({ name: "team-a" }),
      want: ["create backupjobs.ros.io in namespace shop", "backup repositories.ros.io team-a in namespace walle-system"],
    },
    {
      name: "a backup into the default repository",
      access: backupAccess({ namespace: "shop", pvc: "data" }, { ...defaults, defaultRepository: "shared" }),
      want: ["create backupjobs.ros.io in namespace shop", "backup repositories.ros.io shared in namespace walle-system"],
    },
    {
      name: "a restore from its own repository",
      access: restoreAccess({ ...req, repository: { name: "r", namespace: "shop" } }, defaults),
      want: ["create backuprestores.ros.io in namespace shop"],
    },
    {
      name: "a restore from a shared repository",
      access: restoreAccess(req, defaults),
      want: ["create backuprestores.ros.io in namespace shop", "restore repositories.ros.io r in namespace walle-system"],
    },
    {
      name: "a restore of another namespace's PVC",
      access: restoreAccess({ ...req, source: { latest: { pvc: "data", namespace: "web" } } }, defaults),
      want: [
        "create backuprestores.ros.io in namespace shop",
        "create backuprestores.ros.io in namespace web",
        "restore repositories.ros.io r in namespace walle-system",
      ],
    },
    { name: "a resync", access: RESYNC_ACCESS, want: ["resync backupjobs.ros.io in all namespaces"] },
  ])("$name", ({ access, want }) => {
    expect(access.map(describeAccess)).toEqual(want);
  });
});

describe("worker progress", () => {
  it.each([
    ["/apis/ros.io/v1/namespaces/shop/backupjobs/nightly", "BackupJob", { namespace: "shop", name: "nightly" }],
    ["/apis/ros.io/v1/namespaces/shop/backuprestores/undo", "BackupRestore", { namespace: "shop", name: "undo" }],
    ["/apis/ros.io/v1/namespaces/shop/backuprestores/undo", "BackupJob", undefined],
    ["/apis/ros.io/v1/namespaces/shop/backupjobs/nightly", "BackupRestore", undefined],
    [undefined, "BackupJob", undefined],
  ] as const)("subject %s for a %s → %j", (subject, kind, at) => {
    const r = progressSubject(subject, kind);
    if (at) expect(r).toEqual(at);
    else expect(isRefusal(r) && r.issues).toEqual([{ path: "subject", message: `not a ${kind} path` }]);
  });

  it("shows a percentage to one decimal and whole seconds", () => {
    expect(progressStatus({ percentDone: 0.4251, secondsRemaining: 12.6, filesDone: 3 })).toEqual({ percent: 42.5, secondsRemaining: 13, filesDone: 3 });
  });
});

describe("the progress throttle", () => {
  it("lets one pass per key per interval", () => {
    const t = new Throttle(5_000, 100);
    expect([t.allow("a", 0), t.allow("a", 4_999), t.allow("b", 4_999), t.allow("a", 5_000)]).toEqual([true, false, true, true]);
  });

  it("stays bounded: keys whose interval passed go, and the oldest beyond the cap", () => {
    const t = new Throttle(5_000, 3);
    for (let i = 0; i < 1_000; i++) t.allow(`run-${i}`, i);
    expect(t.size).toBe(3);
    // The newest keys are the ones kept, so they are still throttled; an evicted one passes again.
    expect([t.allow("run-999", 1_000), t.allow("run-0", 1_000)]).toEqual([false, true]);
    t.allow("late", 60_000);
    expect(t.size).toBe(1);
  });
});

describe("the resync's plan", () => {
  const meta = (name: string, namespace?: string, labels: Record<string, string> = {}) => ({ name, ...(namespace ? { namespace } : {}), labels });
  const settled = { phase: "Finished", conditions: [{ type: "CleanedUp", status: "True" }] };
  const child = (name: string, type: string, owner: string, ns = "walle-system") => ({
    metadata: meta(name, ns, {
      "ros.io/backup-job-type": type,
      "ros.io/owner-namespace": "shop",
      [type === "backup" ? "ros.io/backup-job" : "ros.io/backup-restore"]: owner,
    }),
  });

  it("lists the children before their owners", () => {
    const first = resyncReads({});
    expect(Object.keys(first).sort()).toEqual(["Job", "PersistentVolumeClaim", "VolumeSnapshot", "VolumeSnapshotContent"]);
    expect(first.Job).toMatchObject({ list: "Job", summary: true, labelSelector: expect.stringMatching(/ros\.io\/backup-job-type in \(backup,restore\)/) });
    expect(Object.keys(resyncReads({ Job: [], PersistentVolumeClaim: [], VolumeSnapshot: [], VolumeSnapshotContent: [] })).sort()).toEqual([
      "backupJobs",
      "backupRestores",
      "backupSets",
    ]);
  });

  it("drives what is in flight, and sweeps the children of runs that are gone or settled", () => {
    const plan = planResync({
      backupJobs: [
        { metadata: meta("running", "shop"), status: { phase: "BackingUp" } },
        { metadata: meta("done", "shop"), status: settled },
      ],
      backupRestores: [{ metadata: meta("undo", "shop"), status: { phase: "Failed" } }],
      backupSets: [
        { metadata: meta("set-1"), status: { state: "Running" } },
        { metadata: meta("set-0"), status: { state: "Finished" } },
        { metadata: meta("new") },
      ],
      Job: [child("w-running", "backup", "running"), child("w-done", "backup", "done"), child("w-gone", "backup", "gone"), child("r-undo", "restore", "undo")],
      PersistentVolumeClaim: [child("p-gone", "restore", "other-restore")],
      VolumeSnapshot: [],
      VolumeSnapshotContent: [],
    });
    expect(plan.backupJobs).toEqual([{ namespace: "shop", name: "running" }]);
    expect(plan.backupRestores).toEqual([{ namespace: "shop", name: "undo" }]);
    expect(plan.backupSets).toEqual(["set-1", "new"]);
    expect(plan.sweep.map((a) => (a.op === "delete" ? `${a.target.kind} ${a.target.name}` : a.op))).toEqual([
      "Job w-done",
      "Job w-gone",
      "PersistentVolumeClaim p-gone",
    ]);
  });
});

describe("progress from a worker", () => {
  const extra = { "authentication.kubernetes.io/pod-name": ["nightly-backup-x7k2p"], "authentication.kubernetes.io/pod-uid": ["uid-1"] };
  it("names the pod a service-account token is bound to, and none for other tokens", () => {
    expect(boundPod("system:serviceaccount:walle-system:walle-worker", extra)).toEqual({
      namespace: "walle-system",
      account: "walle-worker",
      name: "nightly-backup-x7k2p",
      uid: "uid-1",
    });
    expect(boundPod("system:serviceaccount:walle-system:default", {})).toBeUndefined();
    expect(boundPod("alice", extra)).toBeUndefined();
  });

  const bound = { namespace: "walle-system", account: "walle-worker", name: "nightly-backup-x7k2p", uid: "uid-1" };
  const run = { namespace: "shop", name: "nightly", workerNamespace: "walle-system" };
  const worker = { metadata: { uid: "uid-1", labels: { "ros.io/backup-job": "nightly", "ros.io/owner-namespace": "shop" } } };
  it.each([
    { name: "the run's worker", pod: worker, bound, want: undefined },
    { name: "a pod since deleted", pod: null, bound, want: "pod walle-system/nightly-backup-x7k2p, which the token is bound to, no longer exists" },
    {
      name: "a new pod of the same name",
      pod: { metadata: { ...worker.metadata, uid: "uid-2" } },
      bound,
      want: "pod walle-system/nightly-backup-x7k2p, which the token is bound to, no longer exists",
    },
    {
      name: "another run's worker",
      pod: { metadata: { uid: "uid-1", labels: { "ros.io/backup-job": "weekly", "ros.io/owner-namespace": "shop" } } },
      bound,
      want: "pod walle-system/nightly-backup-x7k2p is not the worker of BackupJob shop/nightly",
    },
    {
      name: "a same-named run of another namespace",
      pod: { metadata: { uid: "uid-1", labels: { "ros.io/backup-job": "nightly", "ros.io/owner-namespace": "web" } } },
      bound,
      want: "pod walle-system/nightly-backup-x7k2p is not the worker of BackupJob shop/nightly",
    },
    {
      name: "the run's worker pod as another service account",
      pod: worker,
      bound: { ...bound, account: "default" },
      want: "pod walle-system/nightly-backup-x7k2p runs as service account default, not walle-worker, which every worker of Walle runs as",
    },
    {
      name: "a look-alike pod in the tenant's own namespace",
      pod: worker,
      bound: { ...bound, namespace: "shop" },
      want: "pod shop/nightly-backup-x7k2p is not in walle-system, where the workers of BackupJob shop/nightly run",
    },
  ])("$name", ({ pod, bound: b, want }) => {
    expect(notTheWorker(pod, b, "BackupJob", run)).toBe(want);
  });
});

// The BackupRestore lifecycle as a table: for each phase and what was observed, the phase it moves to, what it
// creates, patches and deletes, and the reason it gives. Then the reads each phase asks for, round by round.
import { describe, expect, it } from "vitest";
import type { BackupRestoreSpec, BackupRestoreStatus } from "../../lib/api/backup-restore.ts";
import { CREATED_BY, Label } from "../../lib/api/constants.ts";
import type { BackupRestore } from "../../lib/api/parse.ts";
import { backupRestoreReads, backupRestoreWorld, decideBackupRestore, type BackupRestoreWorld } from "../../lib/core/backup-restore.ts";
import type { Action } from "../../lib/core/decision.ts";
import { restoreChildNames } from "../../lib/core/names.ts";
import type { Job, Pod, Pv, Pvc } from "../../lib/core/objects.ts";
import { encodeResult } from "../../lib/restic/result.ts";
import { testConfig } from "../support/config.ts";
import { ownWorkerPod, workerJobSeen } from "../support/worker-pods.ts";

const now = new Date("2026-11-30T12:00:00Z");
const config = testConfig;
const restore = { namespace: "shop", name: "undo", uid: "9f8e7d6c-0000-1111-2222-333344445555", generation: 1 };
const names = restoreChildNames(restore);

const intoNew = (repoNs = "shop"): BackupRestoreSpec => ({
  repository: { name: "repo", namespace: repoNs },
  source: { latest: { pvc: "data" } },
  target: { newPvc: { name: "restored", size: "2Gi", accessModes: ["ReadWriteOnce"] } },
});
const intoExisting = (allowInUse = false): BackupRestoreSpec => ({
  repository: { name: "repo", namespace: "shop" },
  source: { snapshotId: "abcdef12" },
  target: { existingPvc: "data", allowInUse },
});

const pvc = (name: string, namespace: string, extra: Partial<Pvc> = {}): Pvc => ({ metadata: { name, namespace }, spec: {}, ...extra });
const pod = (name: string, claim: string, phase = "Running"): Pod => ({
  metadata: { name, namespace: "shop" },
  spec: { containers: [], volumes: [{ name: "v", persistentVolumeClaim: { claimName: claim } }] },
  status: { phase },
});
const job = (condition?: "Complete" | "Failed"): Job =>
  workerJobSeen(names.job, condition ? { conditions: [{ type: condition, status: "True" }] } : { active: 1 });
const workerPod = (phase: string, message?: string): Pod =>
  ownWorkerPod(
    {
      metadata: { name: `${names.job}-x`, creationTimestamp: "2026-11-30T11:59:00Z" },
      status: {
        phase,
        ...(message
          ? { containerStatuses: [{ name: "worker", image: "w", imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode: 0, message } } }] }
          : {}),
      },
    },
    names.job,
  );
const restored = encodeResult({
  command: "restore",
  outcome: "Succeeded",
  reason: "Completed",
  message: "Restored 3 files.",
  snapshotId: "c".repeat(64),
  exitCode: 0,
  exitMeaning: "ok",
  restore: { files: 3, bytes: 300 },
  startedAt: "2026-11-30T11:59:00Z",
  finishedAt: "2026-11-30T11:59:10Z",
});
const wrongPassword = encodeResult({
  command: "restore",
  outcome: "Failed",
  reason: "WrongPassword",
  message: "The repository password is wrong.",
  exitCode: 12,
  exitMeaning: "wrong password",
  startedAt: "2026-11-30T11:59:00Z",
  finishedAt: "2026-11-30T11:59:10Z",
});
const stagingPv = (labelled: boolean, claimRef?: { namespace: string; name: string }): Pv => ({
  metadata: {
    name: "pv-1",
    ...(labelled ? { labels: { "ros.io/backup-restore": "undo" }, annotations: { "ros.io/original-reclaim-policy": "Delete" } } : {}),
  },
  spec: { persistentVolumeReclaimPolicy: labelled ? "Retain" : "Delete", storageClassName: "fast", ...(claimRef ? { claimRef } : {}) },
});

function world(spec: BackupRestoreSpec, status: BackupRestoreStatus, seen: Partial<BackupRestoreWorld> = {}): BackupRestoreWorld {
  return { restore, spec, status, ...seen };
}

/** An action as one line: `create Job walle-system/x`, `patch PersistentVolume /pv-1`, `delete Job shop/x`. */
const line = (a: Action) =>
  a.op === "create"
    ? `create ${a.manifest.kind} ${a.manifest.metadata.namespace ?? ""}/${a.manifest.metadata.name}`
    : `${a.op} ${a.target.kind} ${a.target.namespace ?? ""}/${a.target.name}`;

interface Row {
  readonly what: string;
  readonly world: BackupRestoreWorld;
  readonly phase: string;
  readonly actions: readonly string[];
  /** The RestoreState condition's reason, when the row ends the restore. */
  readonly reason?: string;
}

const waiting = { phase: "WaitingRestore" as const, startTime: "2026-11-30T11:58:00Z" };
const table: readonly Row[] = [
  {
    what: "a new PVC beside the repository: the PVC and the worker Job",
    world: world(intoNew(), {}, { targetPvc: null }),
    phase: "WaitingRestore",
    actions: ["create PersistentVolumeClaim shop/restored", "create ServiceAccount shop/walle-worker", `create Job shop/${names.job}`],
  },
  {
    what: "a new PVC from a shared repository: a staging PVC beside the repository",
    world: world(intoNew("walle-system"), {}, { targetPvc: null, stagingPvc: null }),
    phase: "WaitingRestore",
    actions: [
      `create PersistentVolumeClaim walle-system/${names.stagingPvc}`,
      "create ServiceAccount walle-system/walle-worker",
      `create Job walle-system/${names.job}`,
    ],
  },
  {
    what: "a new PVC whose name is taken by someone else's",
    world: world(intoNew(), {}, { targetPvc: pvc("restored", "shop") }),
    phase: "Failed",
    actions: [],
    reason: "TargetExists",
  },
  {
    what: "an existing PVC that is not there",
    world: world(intoExisting(), {}, { targetPvc: null, podsUsingTarget: [] }),
    phase: "Failed",
    actions: [],
    reason: "TargetNotFound",
  },
  {
    what: "an existing PVC a running pod mounts",
    world: world(intoExisting(), {}, { targetPvc: pvc("data", "shop"), podsUsingTarget: [pod("app", "data")] }),
    phase: "Failed",
    actions: [],
    reason: "TargetInUse",
  },
  {
    what: "an existing PVC a running pod mounts, with allowInUse",
    world: world(intoExisting(true), {}, { targetPvc: pvc("data", "shop"), podsUsingTarget: [pod("app", "data")] }),
    phase: "WaitingRestore",
    actions: ["create ServiceAccount shop/walle-worker", `create Job shop/${names.job}`],
  },
  {
    what: "an existing PVC whose only user has ended",
    world: world(intoExisting(), {}, { targetPvc: pvc("data", "shop"), podsUsingTarget: [pod("done", "data", "Succeeded")] }),
    phase: "WaitingRestore",
    actions: ["create ServiceAccount shop/walle-worker", `create Job shop/${names.job}`],
  },
  {
    what: "an existing PVC from a shared repository",
    world: world({ ...intoExisting(), repository: { name: "repo", namespace: "walle-system" } }, {}, { targetPvc: pvc("data", "shop"), podsUsingTarget: [] }),
    phase: "Failed",
    actions: [],
    reason: "UnsupportedTarget",
  },
  {
    what: "the worker Job has not counted a ready pod yet",
    world: world(intoNew(), waiting, { workerJob: job() }),
    phase: "WaitingRestore",
    actions: [],
  },
  {
    what: "the worker Job counts a ready pod",
    world: world(intoNew(), waiting, { workerJob: { metadata: { name: names.job }, status: { active: 1, ready: 1 } } }),
    phase: "Restoring",
    actions: [],
  },
  {
    what: "the worker Job vanished",
    world: world(intoNew(), waiting, { workerJob: null }),
    phase: "Failed",
    actions: [],
    reason: "WorkerLost",
  },
  {
    what: "the worker failed with a wrong password",
    world: world(intoNew(), waiting, { workerJob: job("Failed"), workerPods: [workerPod("Failed", wrongPassword)] }),
    phase: "Failed",
    actions: [],
    reason: "WrongPassword",
  },
  {
    what: "the worker Job completed, but only a pod that is not its own left a result",
    world: world(
      intoNew(),
      { ...waiting, phase: "Restoring" },
      { workerJob: job("Complete"), workerPods: [{ ...workerPod("Succeeded", restored), metadata: { name: "forged", ownerReferences: [] } }] },
    ),
    phase: "Failed",
    actions: [],
    reason: "NoResult",
  },
  {
    what: "the worker completed, in the restore's namespace",
    world: world(intoNew(), { ...waiting, phase: "Restoring" }, { workerJob: job("Complete"), workerPods: [workerPod("Succeeded", restored)] }),
    phase: "Finished",
    actions: [],
    reason: "Completed",
  },
  {
    what: "handover step 1: Retain on the staging volume, labelled",
    world: world(intoNew("walle-system"), waiting, {
      workerJob: job("Complete"),
      workerPods: [workerPod("Succeeded", restored)],
      stagingPvc: pvc(names.stagingPvc, "walle-system"),
      handoverPv: stagingPv(false),
      targetPvc: null,
    }),
    phase: "WaitingRestore",
    actions: ["patch PersistentVolume /pv-1"],
  },
  {
    what: "handover step 2: the Job and the staging PVC go",
    world: world(intoNew("walle-system"), waiting, {
      workerJob: job("Complete"),
      stagingPvc: pvc(names.stagingPvc, "walle-system"),
      handoverPv: stagingPv(true),
      targetPvc: null,
    }),
    phase: "WaitingRestore",
    actions: [`delete Job walle-system/${names.job}`, `delete PersistentVolumeClaim walle-system/${names.stagingPvc}`],
  },
  {
    what: "handover step 3: pre-bind the volume and create the target PVC naming it",
    world: world(intoNew("walle-system"), waiting, { workerJob: null, stagingPvc: null, handoverPv: stagingPv(true), targetPvc: null }),
    phase: "WaitingRestore",
    actions: ["patch PersistentVolume /pv-1", "create PersistentVolumeClaim shop/restored"],
  },
  {
    what: "handover step 4: bound; the volume gets its policy back and Walle's labels go",
    world: world(intoNew("walle-system"), waiting, {
      workerJob: null,
      stagingPvc: null,
      handoverPv: stagingPv(true, { namespace: "shop", name: "restored" }),
      targetPvc: pvc("restored", "shop", { status: { phase: "Bound" } }),
    }),
    phase: "Finished",
    actions: ["patch PersistentVolume /pv-1"],
    reason: "Completed",
  },
  {
    what: "handover step 4 decided again after its status write was lost: the volume is unlabelled, the target bound to it",
    world: world(
      intoNew("walle-system"),
      { ...waiting, phase: "Restoring" },
      {
        workerJob: null,
        stagingPvc: null,
        handoverPv: null,
        targetPvc: pvc("restored", "shop", {
          metadata: { name: "restored", namespace: "shop", labels: { [Label.CreatedBy]: CREATED_BY, [Label.BackupRestore]: restore.name } },
          spec: { volumeName: "pv-1" },
          status: { phase: "Bound" },
        }),
      },
    ),
    phase: "Finished",
    actions: [],
    reason: "Completed",
  },
  {
    what: "the worker Job vanished before a handover: the target is not bound to the restore's volume",
    world: world(
      intoNew("walle-system"),
      { ...waiting, phase: "Restoring" },
      { workerJob: null, stagingPvc: pvc(names.stagingPvc, "walle-system"), handoverPv: null, targetPvc: null },
    ),
    phase: "Failed",
    actions: [],
    reason: "WorkerLost",
  },
  {
    what: "a staging PVC with no volume to hand over",
    world: world(intoNew("walle-system"), waiting, {
      workerJob: job("Complete"),
      workerPods: [workerPod("Succeeded", restored)],
      stagingPvc: pvc(names.stagingPvc, "walle-system"),
      handoverPv: null,
    }),
    phase: "Failed",
    actions: [],
    reason: "HandoverFailed",
  },
  {
    what: "clean-up after a failed handover gives the volume its policy back",
    world: world(intoNew("walle-system"), { phase: "Failed" }, { handoverPv: stagingPv(true) }),
    phase: "Failed",
    actions: [`delete Job walle-system/${names.job}`, `delete PersistentVolumeClaim walle-system/${names.stagingPvc}`, "patch PersistentVolume /pv-1"],
  },
  {
    what: "clean-up once cleaned up: nothing",
    world: world(intoNew(), {
      phase: "Finished",
      conditions: [{ type: "CleanedUp", status: "True", reason: "Deleted", message: "", lastTransitionTime: "2026-11-30T11:00:00Z" }],
    }),
    phase: "Finished",
    actions: [],
  },
];

describe("decideBackupRestore", () => {
  it.each(table)("$what", ({ world: w, phase, actions, reason }) => {
    const d = decideBackupRestore(w, config, now);
    expect(d.status.phase).toBe(phase);
    expect(d.actions.map(line)).toEqual(actions);
    if (reason) expect(d.status.conditions?.find((c) => c.type === "RestoreState")?.reason).toBe(reason);
    if (phase === "Failed" && reason) expect(d.events).toContainEqual(expect.objectContaining({ type: "Warning", reason: "RestoreFailed" }));
  });

  it("records the snapshot it was given by id, when the worker names none of its own", () => {
    const byShortId = encodeResult({
      command: "restore",
      outcome: "Succeeded",
      reason: "Completed",
      message: "Restored 3 files.",
      exitCode: 0,
      exitMeaning: "ok",
      restore: { files: 3, bytes: 300 },
      startedAt: "2026-11-30T11:59:00Z",
      finishedAt: "2026-11-30T11:59:10Z",
    });
    const d = decideBackupRestore(
      world(intoExisting(), { ...waiting, phase: "Restoring" }, { workerJob: job("Complete"), workerPods: [workerPod("Succeeded", byShortId)] }),
      config,
      now,
    );
    expect(d.status.snapshotId).toBe("abcdef12");
    expect(d.status.conditions?.find((c) => c.type === "SnapshotResolved")?.message).toBe("Restored from restic snapshot abcdef12.");
  });

  it("gives the worker the source and target it needs, never the password", () => {
    const d = decideBackupRestore(
      world({ ...intoNew(), source: { latestBefore: { pvc: "data", time: "2026-11-29T00:00:00Z" } }, include: ["/etc"] }, {}, { targetPvc: null }),
      config,
      now,
    );
    const worker = d.actions.map((a) => (a.op === "create" ? a.manifest : undefined)).find((m) => m?.kind === "Job");
    const env = (worker?.spec as { template: { spec: { containers: { env: { name: string; value: string }[] }[] } } }).template.spec.containers[0]?.env ?? [];
    expect(Object.fromEntries(env.map((e) => [e.name, e.value]))).toMatchObject({
      RESTORE_SNAPSHOT: "latest",
      RESTORE_BEFORE: "2026-11-29T00:00:00Z",
      PVC_NAME: "data",
      PVC_NAMESPACE: "shop",
      RESTORE_INCLUDE: '["/etc"]',
      PROGRESS_SUBJECT: "/apis/ros.io/v1/namespaces/shop/backuprestores/undo",
    });
    expect(JSON.stringify(worker)).not.toMatch(/RESTIC_PASSWORD/);
  });

  describe("the worker it starts", () => {
    const started = (spec: BackupRestoreSpec, seen: Partial<BackupRestoreWorld>) => {
      const d = decideBackupRestore(world(spec, {}, seen), config, now);
      const worker = d.actions.map((a) => (a.op === "create" ? a.manifest : undefined)).find((m) => m?.kind === "Job");
      const podSpec = (
        worker?.spec as {
          template: {
            spec: {
              securityContext: Record<string, unknown>;
              containers: { env: { name: string; value: string }[]; securityContext: Record<string, unknown> }[];
            };
          };
        }
      ).template.spec;
      const c = podSpec.containers[0];
      return {
        env: Object.fromEntries((c?.env ?? []).map((e) => [e.name, e.value])),
        pod: podSpec.securityContext,
        container: c?.securityContext,
        fidelity: d.status.conditions?.find((x) => x.type === "FullFidelity"),
      };
    };
    const existing = { targetPvc: pvc("data", "shop"), podsUsingTarget: [] };

    it("replaces an existing PVC's content, unless merge asks to keep what else it holds", () => {
      expect(started(intoExisting(), existing).env.RESTORE_DELETE).toBe("true");
      expect(started({ ...intoExisting(), target: { existingPvc: "data", merge: true } }, existing).env.RESTORE_DELETE).toBe("false");
      expect(started(intoNew(), { targetPvc: null }).env.RESTORE_DELETE).toBe("true");
    });

    it("restores owners with full fidelity from the install namespace's repository", () => {
      const r = started(intoNew("walle-system"), { targetPvc: null, stagingPvc: null });
      expect(r.pod).toMatchObject({ runAsUser: 0, runAsNonRoot: false });
      expect(r.pod.fsGroup).toBeUndefined();
      expect(r.container).toMatchObject({
        capabilities: { drop: ["ALL"], add: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD", "SETFCAP"] },
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
      });
      expect(r.fidelity).toMatchObject({ status: "True", reason: "PrivilegedWorker" });
    });

    it("in an annotated namespace too, but unprivileged in one without the annotation, saying what is lost", () => {
      const allowed = started(intoExisting(), {
        ...existing,
        workerNamespace: { metadata: { name: "shop", annotations: { "ros.io/privileged-workers": "true" } } },
      });
      expect(allowed.fidelity).toMatchObject({ status: "True" });
      const plain = started(intoExisting(), { ...existing, workerNamespace: { metadata: { name: "shop" } } });
      expect(plain.pod).toMatchObject({ runAsNonRoot: true, runAsUser: 65532 });
      expect(plain.fidelity).toMatchObject({
        status: "False",
        reason: "UnprivilegedWorker",
        message: expect.stringMatching(/Every restored file is owned by 65532:65532/),
      });
    });

    it("as the application's user when the BackupRestore gives one", () => {
      const r = started({ ...intoNew("walle-system"), workerSecurityContext: { runAsUser: 999, runAsGroup: 999 } }, { targetPvc: null, stagingPvc: null });
      expect(r.pod).toMatchObject({ runAsNonRoot: true, runAsUser: 999, runAsGroup: 999, fsGroup: 999 });
      expect(r.fidelity?.message).toMatch(/owned by 999:999/);
    });
  });
});

describe("the reads a BackupRestore step asks for", () => {
  const object = (spec: BackupRestoreSpec, status: BackupRestoreStatus = {}): BackupRestore => ({
    apiVersion: "ros.io/v1",
    kind: "BackupRestore",
    metadata: { name: restore.name, namespace: restore.namespace, uid: restore.uid },
    spec,
    status,
  });

  it("asks for the target and the pods first for an existing PVC, then nothing more", () => {
    const br = object(intoExisting());
    // The repository is in the restore's namespace, not the install namespace: its annotation decides the mode.
    expect(Object.keys(backupRestoreReads(br, {}, config))).toEqual(["targetPvc", "pods", "workerNamespace"]);
    expect(backupRestoreReads(br, { targetPvc: null, pods: [], workerNamespace: null }, config)).toEqual({});
  });

  it("reads the staging volume only once the staging PVC names one and no volume is labelled yet", () => {
    const br = object(intoNew("walle-system"), waiting);
    expect(Object.keys(backupRestoreReads(br, {}, config)).sort()).toEqual(["labelledPvs", "stagingPvc", "targetPvc", "workerJob"]);
    const seen = {
      workerJob: job("Complete"),
      stagingPvc: pvc(names.stagingPvc, "walle-system", { spec: { volumeName: "pv-1" } }),
      labelledPvs: [],
      targetPvc: null,
    };
    const second = backupRestoreReads(br, seen, config);
    expect(second).toEqual({
      workerPods: { list: "Pod", namespace: "walle-system", labelSelector: `job-name=${names.job}` },
      stagingPv: { get: "PersistentVolume", name: "pv-1" },
    });
    const w = backupRestoreWorld(br, { ...seen, workerPods: [], stagingPv: stagingPv(false) });
    expect(w.handoverPv?.metadata.name).toBe("pv-1");
    expect(backupRestoreReads(br, { ...seen, workerPods: [], stagingPv: null }, config)).toEqual({});
  });

  it("keeps only the pods that mount the target", () => {
    const w = backupRestoreWorld(object(intoExisting()), { targetPvc: pvc("data", "shop"), pods: [pod("a", "data"), pod("b", "other")] });
    expect(w.podsUsingTarget?.map((p) => p.metadata.name)).toEqual(["a"]);
  });
});

// The BackupRestore lifecycle as a pure decision, like the BackupJob's.
//
// The worker runs in the repository's namespace, so the Secret never leaves it:
//   - repository in the restore's namespace: restore straight into the existing PVC, or into a new PVC there;
//   - repository elsewhere (the install namespace): restore into a new staging PVC beside the repository, then
//     hand its volume over (docs/architecture.md, Security): Retain on the PV, release it, pre-bind it to the target PVC, wait for
//     Bound, restore the reclaim policy.
//   NotStarted --target checked or created, worker Job--> WaitingRestore --pod running--> Restoring
//   --Job complete (and volume handed over)--> Finished | Failed; then the Job and staging PVC are deleted.
import { BackupRestoreConditionType, BackupRestorePhase, type BackupRestoreSpec, type BackupRestoreStatus } from "../api/backup-restore.ts";
import { ConditionReason, EventReason, type ConditionType } from "../api/conditions.ts";
import { ConditionStatus, CREATED_BY, JobType, Label, WalleAnnotation } from "../api/constants.ts";
import type { BackupRestore } from "../api/parse.ts";
import type { WorkerResult } from "../restic/result.ts";
import { ownedMetadata, ownerRef, workerActions, type Manifest, type WalleConfig } from "./builders.ts";
import { isCleanedUp, rfc3339, setCondition, type ConditionInput } from "./conditions.ts";
import { failsInvalid, failsRefused, type Action, type Decision, type KubeEvent, type ReadPlan, type Reconciler } from "./decision.ts";
import { restoreChildNames } from "./names.ts";
import { jobFailureMessage, jobHasRunningPod, type Job, type ObjectSummary, type Pod, type Pv, type Pvc } from "./objects.ts";
import { allowsPrivilegedWorkers, fidelityCondition, needsNamespaceRead, workerMode } from "./privileges.ts";
import { noResult, workerPodsRead, workerReport } from "./worker-result.ts";

export const RESTORE_PATH = "/restore";
const ORIGINAL_RECLAIM_ANNOTATION = WalleAnnotation.OriginalReclaimPolicy;

/** What a step read. `null` means read and absent; `undefined` means not read in this phase. */
export interface BackupRestoreObserved {
  /** The PVC the restore ends in (existing or new), in the restore's namespace. */
  readonly targetPvc?: Pvc | null;
  /** The pods of the restore's namespace (only read for an existing PVC). */
  readonly pods?: readonly Pod[];
  readonly stagingPvc?: Pvc | null;
  /** Volumes Walle labelled for this restore's handover. */
  readonly labelledPvs?: readonly Pv[];
  /** The staging PVC's volume, while none is labelled yet. */
  readonly stagingPv?: Pv | null;
  readonly workerJob?: Job | null;
  readonly workerPods?: readonly Pod[];
  /** The worker's namespace, when its annotation decides the worker's mode (lib/core/privileges.ts). */
  readonly workerNamespace?: ObjectSummary | null;
}

export interface BackupRestoreWorld {
  readonly restore: { readonly namespace: string; readonly name: string; readonly uid: string; readonly generation?: number };
  readonly spec: BackupRestoreSpec;
  readonly status: BackupRestoreStatus;
  /** The PVC the restore ends in (existing or new), in the restore's namespace. */
  readonly targetPvc?: Pvc | null;
  /** Pods of the restore's namespace that mount the target (only read for an existing PVC). */
  readonly podsUsingTarget?: readonly Pod[];
  readonly stagingPvc?: Pvc | null;
  /** The volume being handed over (found by Walle's label once the staging PVC is gone). */
  readonly handoverPv?: Pv | null;
  readonly workerJob?: Job | null;
  readonly workerPods?: readonly Pod[];
  readonly workerNamespace?: ObjectSummary | null;
}

export function restoreWorkerNamespace(spec: BackupRestoreSpec, config: WalleConfig): string {
  return spec.repository.namespace ?? config.installNamespace;
}

export function targetPvcName(spec: BackupRestoreSpec): string {
  return spec.target.existingPvc ?? spec.target.newPvc?.name ?? "";
}

function restoreRef(br: BackupRestore) {
  return { namespace: br.metadata.namespace ?? "", name: br.metadata.name ?? "", uid: br.metadata.uid ?? "", generation: br.metadata.generation };
}

/**
 * What a phase needs read. In a later round: the staging volume once the staging PVC named it, and the worker's
 * pods once its Job exists.
 */
export function backupRestoreReads(br: BackupRestore, seen: Partial<BackupRestoreObserved>, config: WalleConfig): ReadPlan<BackupRestoreObserved> {
  const restore = restoreRef(br);
  const { namespace, name } = restore;
  const names = restoreChildNames(restore);
  const workerNs = restoreWorkerNamespace(br.spec, config);
  const cross = workerNs !== namespace;
  const target: ReadPlan<BackupRestoreObserved> = { targetPvc: { get: "PersistentVolumeClaim", name: targetPvcName(br.spec), namespace } };
  const staging: ReadPlan<BackupRestoreObserved> = { stagingPvc: { get: "PersistentVolumeClaim", name: names.stagingPvc, namespace: workerNs } };
  const labelled: ReadPlan<BackupRestoreObserved> = {
    labelledPvs: { list: "PersistentVolume", labelSelector: `${Label.BackupRestore}=${name},${Label.OwnerNamespace}=${namespace}` },
  };
  const first = seen.targetPvc === undefined && seen.workerJob === undefined && seen.labelledPvs === undefined && seen.stagingPvc === undefined;
  switch (br.status?.phase ?? BackupRestorePhase.NotStarted) {
    case BackupRestorePhase.NotStarted:
    case BackupRestorePhase.ResolvingSnapshot:
    case BackupRestorePhase.PreparingTarget:
      if (!first) return {};
      return {
        ...target,
        ...(br.spec.target.existingPvc ? { pods: { list: "Pod", namespace } } : cross ? staging : {}),
        ...(needsNamespaceRead(workerNs, config.installNamespace, br.spec.workerSecurityContext)
          ? { workerNamespace: { get: "Namespace", name: workerNs } }
          : {}),
      };
    case BackupRestorePhase.WaitingRestore:
    case BackupRestorePhase.Restoring: {
      const job = { get: "Job", name: names.job, namespace: workerNs } as const;
      if (first) return cross ? { workerJob: job, ...staging, ...labelled, ...target } : { workerJob: job };
      const pods = seen.workerPods === undefined ? workerPodsRead(seen.workerJob, workerNs, names.job) : undefined;
      return { ...(pods ? { workerPods: pods } : {}), ...(cross ? stagingVolume(seen) : {}) };
    }
    case BackupRestorePhase.Finished:
    case BackupRestorePhase.Failed:
      return cross && first ? labelled : {};
  }
}

/** The staging PVC's volume, read only when no volume is labelled for the handover yet. */
function stagingVolume(seen: Partial<BackupRestoreObserved>): ReadPlan<BackupRestoreObserved> {
  const volume = seen.stagingPvc?.spec.volumeName;
  return seen.labelledPvs?.length === 0 && volume && seen.stagingPv === undefined ? { stagingPv: { get: "PersistentVolume", name: volume } } : {};
}

export function backupRestoreWorld(br: BackupRestore, seen: Partial<BackupRestoreObserved>): BackupRestoreWorld {
  const target = targetPvcName(br.spec);
  // The volume to hand over: labelled once the handover began, else the staging PVC's.
  const handoverPv = seen.labelledPvs === undefined ? undefined : (seen.labelledPvs[0] ?? seen.stagingPv ?? null);
  return {
    restore: restoreRef(br),
    spec: br.spec,
    status: br.status ?? {},
    targetPvc: seen.targetPvc,
    podsUsingTarget: seen.pods?.filter((p) => p.spec.volumes?.some((v) => v.persistentVolumeClaim?.claimName === target)),
    stagingPvc: seen.stagingPvc,
    handoverPv,
    workerJob: seen.workerJob,
    workerPods: seen.workerPods,
    workerNamespace: seen.workerNamespace,
  };
}

function restoreEnv(spec: BackupRestoreSpec, namespace: string, config: WalleConfig): Record<string, string> {
  const s = spec.source;
  const pick = s.latest ?? s.latestBefore;
  return {
    RESTORE_TARGET_PATH: RESTORE_PATH,
    RESTORE_SNAPSHOT: s.snapshotId ?? "latest",
    ...(s.latestBefore ? { RESTORE_BEFORE: s.latestBefore.time } : {}),
    ...(pick ? { PVC_NAME: pick.pvc, PVC_NAMESPACE: pick.namespace ?? namespace } : {}),
    ...(pick?.cluster ? { CLUSTER_NAME: pick.cluster } : { CLUSTER_NAME: config.clusterName }),
    ...(spec.include?.length ? { RESTORE_INCLUDE: JSON.stringify(spec.include) } : {}),
    // The target ends up holding exactly the snapshot, unless the user asked to keep what else an existing PVC holds.
    RESTORE_DELETE: String(spec.target.merge !== true),
    PROGRESS_SUBJECT: `/apis/ros.io/v1/namespaces/${namespace}/backuprestores/`,
  };
}

export function decideBackupRestore(w: BackupRestoreWorld, config: WalleConfig, now: Date): Decision<BackupRestoreStatus> {
  const { namespace, name } = w.restore;
  const names = restoreChildNames(w.restore);
  const workerNs = restoreWorkerNamespace(w.spec, config);
  const cross = workerNs !== namespace;
  const target = targetPvcName(w.spec);
  const actions: Action[] = [];
  const events: KubeEvent[] = [];
  let status: BackupRestoreStatus = { ...w.status, observedGeneration: w.restore.generation };
  const phase = w.status.phase ?? BackupRestorePhase.NotStarted;
  const owner = { namespace, ref: ownerRef("BackupRestore", name, w.restore.uid) };
  const labels = { [Label.BackupRestore]: name, [Label.OwnerNamespace]: namespace, [Label.BackupJobType]: JobType.Restore };
  const meta = (n: string, ns: string | undefined): Manifest["metadata"] => ownedMetadata(n, ns, labels, owner);
  // The restored PVC is the user's result and outlives the BackupRestore: no owner reference, and no job-type
  // label, so nothing ever sweeps it up as a leftover.
  const resultLabels = { [Label.CreatedBy]: CREATED_BY, [Label.BackupRestore]: name };
  const result = (): Decision<BackupRestoreStatus> => ({ actions, status, events });
  const condition = (type: ConditionType, ok: ConditionStatus, reason: ConditionInput["reason"], message: string) => {
    status = { ...status, conditions: setCondition(status.conditions, { type, status: ok, reason, message }, now) };
  };
  const fail = (reason: ConditionInput["reason"], message: string) => {
    condition(BackupRestoreConditionType.RestoreState, ConditionStatus.False, reason, message);
    status = { ...status, phase: BackupRestorePhase.Failed, finishTime: rfc3339(now), progress: undefined };
    events.push({ type: "Warning", reason: EventReason.RestoreFailed, note: message });
    return result();
  };

  switch (phase) {
    case BackupRestorePhase.NotStarted:
    case BackupRestorePhase.ResolvingSnapshot:
    case BackupRestorePhase.PreparingTarget:
      return prepare();
    case BackupRestorePhase.WaitingRestore:
    case BackupRestorePhase.Restoring:
      return awaitWorker();
    case BackupRestorePhase.Finished:
    case BackupRestorePhase.Failed:
      return cleanUp();
  }

  function prepare(): Decision<BackupRestoreStatus> {
    let claim = target;
    let claimNs = namespace;
    if (w.spec.target.existingPvc) {
      if (cross) {
        return fail(
          ConditionReason.UnsupportedTarget,
          `Restoring into an existing PVC needs the repository in namespace ${namespace}: the worker must mount the PVC, and it runs beside the repository (${workerNs}). Use target.newPvc instead.`,
        );
      }
      if (w.targetPvc === null) return fail(ConditionReason.TargetNotFound, `PersistentVolumeClaim ${namespace}/${target} was not found.`);
      const users = (w.podsUsingTarget ?? []).filter(
        (p) => p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed" && p.metadata.labels?.[Label.BackupRestore] !== name,
      );
      if (users.length > 0 && !w.spec.target.allowInUse) {
        return fail(
          ConditionReason.TargetInUse,
          `PersistentVolumeClaim ${namespace}/${target} is mounted by running pod(s) ${users.map((p) => p.metadata.name).join(", ")}; stop them first, or set spec.target.allowInUse to restore anyway.`,
        );
      }
    } else {
      const spec = w.spec.target.newPvc;
      if (!spec) return fail(ConditionReason.InvalidTarget, "spec.target names neither existingPvc nor newPvc.");
      if (w.targetPvc && w.targetPvc.metadata.labels?.[Label.BackupRestore] !== name) {
        return fail(
          ConditionReason.TargetExists,
          `PersistentVolumeClaim ${namespace}/${spec.name} already exists and was not made by this restore; choose another name or use target.existingPvc.`,
        );
      }
      claim = cross ? names.stagingPvc : spec.name;
      claimNs = cross ? workerNs : namespace;
      const existing = cross ? w.stagingPvc : w.targetPvc;
      if (!existing) {
        const pvcMeta = cross ? meta(claim, claimNs) : { name: claim, namespace: claimNs, labels: resultLabels };
        actions.push({
          op: "create",
          manifest: {
            apiVersion: "v1",
            kind: "PersistentVolumeClaim",
            metadata: pvcMeta,
            spec: {
              accessModes: spec.accessModes,
              resources: { requests: { storage: spec.size } },
              ...(spec.storageClassName ? { storageClassName: spec.storageClassName } : {}),
            },
          },
        });
      }
    }
    const mode = workerMode(allowsPrivilegedWorkers(workerNs, config.installNamespace, w.workerNamespace), w.spec.workerSecurityContext);
    const fidelity = fidelityCondition(mode, JobType.Restore, workerNs);
    condition(fidelity.type, fidelity.status, fidelity.reason, fidelity.message);
    actions.push(
      ...workerActions({
        metadata: meta(names.job, workerNs),
        config,
        command: JobType.Restore,
        mode,
        repositorySecret: w.spec.repository.name,
        shownIn: namespace,
        volume: { claimName: claim, readOnly: false, mountPath: RESTORE_PATH },
        env: { ...restoreEnv(w.spec, namespace, config), PROGRESS_SUBJECT: `/apis/ros.io/v1/namespaces/${namespace}/backuprestores/${name}` },
      }),
    );
    condition(
      BackupRestoreConditionType.TargetReady,
      ConditionStatus.False,
      ConditionReason.Preparing,
      `Restoring into PersistentVolumeClaim ${claimNs}/${claim}.`,
    );
    status = { ...status, phase: BackupRestorePhase.WaitingRestore, startTime: status.startTime ?? rfc3339(now) };
    events.push({ type: "Normal", reason: EventReason.Restoring, note: `Started worker Job ${workerNs}/${names.job} to restore into ${claimNs}/${claim}.` });
    return result();
  }

  function awaitWorker(): Decision<BackupRestoreStatus> {
    const job = w.workerJob;
    // Once the staging PVC is handed over the Job is gone by design: the handover steps carry on without it.
    if (cross && w.handoverPv?.metadata.labels?.[Label.BackupRestore] === name) return handOver(undefined);
    // The handover's last step takes Walle's labels off the volume. Decided again after it (its status write lost
    // to a conflict, say), the restore finds its target PVC, made by this restore, bound, and finishes.
    const handedOver = w.targetPvc?.status?.phase === "Bound" && w.targetPvc.metadata.labels?.[Label.BackupRestore] === name;
    if (cross && job === null && handedOver) return finish(undefined);
    if (job === null) return fail(ConditionReason.WorkerLost, `Stuck in ${phase}: worker Job ${workerNs}/${names.job} disappeared before it finished.`);
    if (!job) return result();
    const report = workerReport(job, w.workerPods ?? []);
    const { outcome, message, result: res } = report;
    if (!outcome) {
      if (phase === BackupRestorePhase.WaitingRestore && jobHasRunningPod(job)) status = { ...status, phase: BackupRestorePhase.Restoring };
      return result();
    }
    const missing = noResult(report, { namespace: workerNs, name: names.job });
    if (missing) return fail(ConditionReason.NoResult, missing);
    if (outcome !== "Complete" || !res || res.outcome === "Failed") {
      return fail(res?.reason ?? ConditionReason.WorkerFailed, res?.message ?? message ?? jobFailureMessage(job) ?? "The worker Job failed.");
    }
    // The worker names the snapshot it chose by its full id; one it was given by a short id stays as given.
    const snapshotId = res.snapshotId ?? w.spec.source.snapshotId;
    status = {
      ...status,
      ...(snapshotId ? { snapshotId } : {}),
      ...(res.restore
        ? {
            summary: {
              totalFiles: res.restore.files,
              filesRestored: res.restore.files,
              totalBytes: res.restore.bytes,
              bytesRestored: res.restore.bytes,
              totalDuration: Math.max(0, (Date.parse(res.finishedAt) - Date.parse(res.startedAt)) / 1000),
            },
          }
        : {}),
      progress: undefined,
    };
    condition(
      BackupRestoreConditionType.SnapshotResolved,
      ConditionStatus.True,
      ConditionReason.Resolved,
      `Restored from restic snapshot ${snapshotId?.slice(0, 8) ?? "(unknown)"}.`,
    );
    return cross ? handOver(res) : finish(res);
  }

  function finish(res: WorkerResult | undefined): Decision<BackupRestoreStatus> {
    condition(
      BackupRestoreConditionType.TargetReady,
      ConditionStatus.True,
      ConditionReason.Bound,
      `PersistentVolumeClaim ${namespace}/${target} holds the restored data.`,
    );
    condition(BackupRestoreConditionType.RestoreState, ConditionStatus.True, res?.reason ?? ConditionReason.Completed, res?.message ?? "Restore finished.");
    status = { ...status, phase: BackupRestorePhase.Finished, finishTime: rfc3339(now) };
    events.push({ type: "Normal", reason: EventReason.RestoreFinished, note: `Restored into PersistentVolumeClaim ${namespace}/${target}.` });
    return result();
  }

  /** docs/architecture.md, Security: handing a restored volume over: move the staging volume to the target namespace without copying it. */
  function handOver(res: WorkerResult | undefined): Decision<BackupRestoreStatus> {
    const spec = w.spec.target.newPvc;
    const pv = w.handoverPv;
    const pvPath = (n: string) => ({ apiVersion: "v1", kind: "PersistentVolume", name: n }) as const;
    if (!pv) return fail(ConditionReason.HandoverFailed, `Staging PVC ${workerNs}/${names.stagingPvc} has no volume to hand over.`);
    const pvName = pv.metadata.name ?? "";
    if (pv.metadata.labels?.[Label.BackupRestore] !== name) {
      // Step 1: Retain on the staging volume, remembering its policy, and label it so it can be found later.
      actions.push({
        op: "patch",
        target: pvPath(pvName),
        patch: {
          metadata: {
            labels: { [Label.CreatedBy]: CREATED_BY, ...labels },
            annotations: { [ORIGINAL_RECLAIM_ANNOTATION]: pv.spec.persistentVolumeReclaimPolicy ?? "Delete" },
          },
          spec: { persistentVolumeReclaimPolicy: "Retain" },
        },
      });
      return result();
    }
    // Step 2: release it: the Job and the staging PVC go.
    if (w.stagingPvc) {
      actions.push({ op: "delete", target: { apiVersion: "batch/v1", kind: "Job", namespace: workerNs, name: names.job } });
      actions.push({ op: "delete", target: { apiVersion: "v1", kind: "PersistentVolumeClaim", namespace: workerNs, name: names.stagingPvc } });
      return result();
    }
    // Step 3: pre-bind the volume to the target PVC, and create that PVC naming the volume.
    const claimRef = pv.spec.claimRef;
    if (claimRef?.namespace !== namespace || claimRef.name !== target) {
      actions.push({
        op: "patch",
        target: pvPath(pvName),
        patch: { spec: { claimRef: { apiVersion: "v1", kind: "PersistentVolumeClaim", namespace, name: target, uid: null, resourceVersion: null } } },
      });
    }
    if (!w.targetPvc && spec) {
      actions.push({
        op: "create",
        manifest: {
          apiVersion: "v1",
          kind: "PersistentVolumeClaim",
          metadata: { name: target, namespace, labels: resultLabels },
          spec: {
            accessModes: spec.accessModes,
            resources: { requests: { storage: spec.size } },
            storageClassName: pv.spec.storageClassName ?? spec.storageClassName ?? "",
            volumeName: pvName,
          },
        },
      });
    }
    if (w.targetPvc?.status?.phase !== "Bound") return result();
    // Step 4: bound: the volume belongs to the target PVC now; give it back its reclaim policy.
    const original = pv.metadata.annotations?.[ORIGINAL_RECLAIM_ANNOTATION] ?? "Delete";
    // Walle's labels go too: the volume is the user's now, and nothing of Walle's should watch or sweep it.
    const unlabel = Object.fromEntries([Label.CreatedBy, ...Object.keys(labels)].map((k) => [k, null]));
    actions.push({
      op: "patch",
      target: pvPath(pvName),
      patch: { metadata: { labels: unlabel, annotations: { [ORIGINAL_RECLAIM_ANNOTATION]: null } }, spec: { persistentVolumeReclaimPolicy: original } },
    });
    return finish(res);
  }

  function cleanUp(): Decision<BackupRestoreStatus> {
    if (isCleanedUp(status.conditions)) return result();
    actions.push(
      { op: "delete", target: { apiVersion: "batch/v1", kind: "Job", namespace: workerNs, name: names.job } },
      ...(cross ? [{ op: "delete", target: { apiVersion: "v1", kind: "PersistentVolumeClaim", namespace: workerNs, name: names.stagingPvc } } as const] : []),
    );
    // A failed handover must not leave a volume stuck on Retain: give it back its policy so it is reclaimed.
    const pv = w.handoverPv;
    if (phase === BackupRestorePhase.Failed && pv?.metadata.annotations?.[ORIGINAL_RECLAIM_ANNOTATION]) {
      actions.push({
        op: "patch",
        target: { apiVersion: "v1", kind: "PersistentVolume", name: pv.metadata.name ?? "" },
        patch: { spec: { persistentVolumeReclaimPolicy: pv.metadata.annotations[ORIGINAL_RECLAIM_ANNOTATION] } },
      });
    }
    condition(BackupRestoreConditionType.CleanedUp, ConditionStatus.True, ConditionReason.Deleted, "The worker Job and any staging PVC were deleted.");
    return result();
  }
}

/** How a BackupRestore fails when Walle cannot read it, or the API server refuses what a step must make. */
const failing = {
  kind: "BackupRestore",
  failed: BackupRestorePhase.Failed,
  condition: BackupRestoreConditionType.RestoreState,
  event: EventReason.RestoreFailed,
} as const;

export const backupRestoreReconciler: Reconciler<BackupRestore, BackupRestoreObserved, BackupRestoreWorld, BackupRestoreStatus> = {
  kind: "BackupRestore",
  reads: backupRestoreReads,
  world: backupRestoreWorld,
  decide: decideBackupRestore,
  invalid: failsInvalid(failing),
  refused: failsRefused(failing),
};

// The BackupRestore lifecycle as a pure decision, like the BackupJob's.
//
// The worker runs in the repository's namespace, so the Secret never leaves it:
//   - repository in the restore's namespace: restore straight into the existing PVC, or into a new PVC there;
//   - repository elsewhere (the install namespace): restore into a new staging PVC beside the repository, then
//     hand its volume over (DESIGN §3): Retain on the PV, release it, pre-bind it to the target PVC, wait for
//     Bound, restore the reclaim policy.
//   NotStarted --target checked or created, worker Job--> WaitingRestore --pod running--> Restoring
//   --Job complete (and volume handed over)--> Finished | Failed; then the Job and staging PVC are deleted.
import { BackupRestoreConditionType, BackupRestorePhase, type BackupRestoreSpec, type BackupRestoreStatus } from "../api/backup-restore.ts";
import { ConditionStatus, CREATED_BY, JobType, Label } from "../api/constants.ts";
import type { WorkerResult } from "../restic/result.ts";
import type { Action, Decision, KubeEvent } from "./backup-job.ts";
import { ownedMetadata, ownerRef, workerJob, type Manifest, type WalleConfig } from "./builders.ts";
import { isTrue, rfc3339, setCondition } from "./conditions.ts";
import { restoreChildNames } from "./names.ts";
import { jobFailureMessage, type Job, type Pod, type Pv, type Pvc } from "./objects.ts";
import { workerReport } from "./worker-result.ts";

export const RESTORE_PATH = "/restore";
/** On a handed-over PV: the reclaim policy to put back once the target PVC is bound. */
export const ORIGINAL_RECLAIM_ANNOTATION = "ros.io/original-reclaim-policy";
const CLEANED_UP = "CleanedUp";

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
}

export function restoreWorkerNamespace(spec: BackupRestoreSpec, config: WalleConfig): string {
  return spec.repository.namespace ?? config.installNamespace;
}

export function targetPvcName(spec: BackupRestoreSpec): string {
  return spec.target.existingPvc ?? spec.target.newPvc?.name ?? "";
}

/** What a phase needs read. */
export function backupRestoreReads(status: BackupRestoreStatus, spec: BackupRestoreSpec, cross: boolean): ReadonlySet<keyof BackupRestoreWorld> {
  switch (status.phase ?? BackupRestorePhase.NotStarted) {
    case BackupRestorePhase.NotStarted:
    case BackupRestorePhase.ResolvingSnapshot:
    case BackupRestorePhase.PreparingTarget:
      return new Set(spec.target.existingPvc ? ["targetPvc", "podsUsingTarget"] : cross ? ["targetPvc", "stagingPvc"] : ["targetPvc"]);
    case BackupRestorePhase.WaitingRestore:
    case BackupRestorePhase.Restoring:
      return new Set(cross ? ["workerJob", "workerPods", "stagingPvc", "handoverPv", "targetPvc"] : ["workerJob", "workerPods"]);
    case BackupRestorePhase.Finished:
    case BackupRestorePhase.Failed:
      return new Set(cross ? ["handoverPv"] : []);
  }
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
  const condition = (type: string, ok: ConditionStatus, reason: string, message: string) => {
    status = { ...status, conditions: setCondition(status.conditions, { type, status: ok, reason, message }, now) };
  };
  const fail = (reason: string, message: string) => {
    condition(BackupRestoreConditionType.RestoreState, ConditionStatus.False, reason, message);
    status = { ...status, phase: BackupRestorePhase.Failed, finishTime: rfc3339(now), progress: undefined };
    events.push({ type: "Warning", reason: "RestoreFailed", note: message });
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
        return fail("UnsupportedTarget", `Restoring into an existing PVC needs the repository in namespace ${namespace}: the worker must mount the PVC, and it runs beside the repository (${workerNs}). Use target.newPvc instead.`);
      }
      if (w.targetPvc === null) return fail("TargetNotFound", `PersistentVolumeClaim ${namespace}/${target} was not found.`);
      const users = (w.podsUsingTarget ?? []).filter((p) => p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed" && p.metadata.labels?.[Label.BackupRestore] !== name);
      if (users.length > 0 && !w.spec.target.allowInUse) {
        return fail("TargetInUse", `PersistentVolumeClaim ${namespace}/${target} is mounted by running pod(s) ${users.map((p) => p.metadata.name).join(", ")}; stop them first, or set spec.target.allowInUse to restore anyway.`);
      }
    } else {
      const spec = w.spec.target.newPvc;
      if (!spec) return fail("InvalidTarget", "spec.target names neither existingPvc nor newPvc.");
      if (w.targetPvc && w.targetPvc.metadata.labels?.[Label.BackupRestore] !== name) {
        return fail("TargetExists", `PersistentVolumeClaim ${namespace}/${spec.name} already exists and was not made by this restore; choose another name or use target.existingPvc.`);
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
    actions.push({
      op: "create",
      manifest: workerJob({
        metadata: meta(names.job, workerNs),
        config,
        command: JobType.Restore,
        repositorySecret: w.spec.repository.name,
        volume: { claimName: claim, readOnly: false, mountPath: RESTORE_PATH },
        env: { ...restoreEnv(w.spec, namespace, config), PROGRESS_SUBJECT: `/apis/ros.io/v1/namespaces/${namespace}/backuprestores/${name}` },
      }),
    });
    condition(BackupRestoreConditionType.TargetReady, ConditionStatus.False, "Preparing", `Restoring into PersistentVolumeClaim ${claimNs}/${claim}.`);
    status = { ...status, phase: BackupRestorePhase.WaitingRestore, startTime: status.startTime ?? rfc3339(now) };
    events.push({ type: "Normal", reason: "Restoring", note: `Started worker Job ${workerNs}/${names.job} to restore into ${claimNs}/${claim}.` });
    return result();
  }

  function awaitWorker(): Decision<BackupRestoreStatus> {
    const job = w.workerJob;
    // Once the staging PVC is handed over the Job is gone by design: the handover steps carry on without it.
    if (cross && w.handoverPv?.metadata.labels?.[Label.BackupRestore] === name) return handOver(undefined);
    if (job === null) return fail("WorkerLost", `Stuck in ${phase}: worker Job ${workerNs}/${names.job} disappeared before it finished.`);
    if (!job) return result();
    const { outcome, pod, message, result: res } = workerReport(job, w.workerPods ?? []);
    if (!outcome) {
      if (phase === BackupRestorePhase.WaitingRestore && pod?.status?.phase === "Running") status = { ...status, phase: BackupRestorePhase.Restoring };
      return result();
    }
    if (outcome !== "Complete" || !res || res.outcome === "Failed") {
      return fail(res?.reason ?? "WorkerFailed", res?.message ?? message ?? jobFailureMessage(job) ?? "The worker Job failed.");
    }
    status = {
      ...status,
      ...(res.snapshotId ? { snapshotId: res.snapshotId } : {}),
      ...(res.restore ? {
        summary: {
          totalFiles: res.restore.files, filesRestored: res.restore.files, totalBytes: res.restore.bytes, bytesRestored: res.restore.bytes,
          totalDuration: Math.max(0, (Date.parse(res.finishedAt) - Date.parse(res.startedAt)) / 1000),
        },
      } : {}),
      progress: undefined,
    };
    condition(BackupRestoreConditionType.SnapshotResolved, ConditionStatus.True, "Resolved", `Restored from restic snapshot ${res.snapshotId?.slice(0, 8) ?? "(unknown)"}.`);
    return cross ? handOver(res) : finish(res);
  }

  function finish(res: WorkerResult | undefined): Decision<BackupRestoreStatus> {
    condition(BackupRestoreConditionType.TargetReady, ConditionStatus.True, "Bound", `PersistentVolumeClaim ${namespace}/${target} holds the restored data.`);
    condition(BackupRestoreConditionType.RestoreState, ConditionStatus.True, res?.reason ?? "Completed", res?.message ?? "Restore finished.");
    status = { ...status, phase: BackupRestorePhase.Finished, finishTime: rfc3339(now) };
    events.push({ type: "Normal", reason: "RestoreFinished", note: `Restored into PersistentVolumeClaim ${namespace}/${target}.` });
    return result();
  }

  /** DESIGN §3, the restore side: move the staging volume to the target namespace without copying it. */
  function handOver(res: WorkerResult | undefined): Decision<BackupRestoreStatus> {
    const spec = w.spec.target.newPvc;
    const pv = w.handoverPv;
    const pvPath = (n: string) => ({ apiVersion: "v1", kind: "PersistentVolume", name: n });
    if (!pv) return fail("HandoverFailed", `Staging PVC ${workerNs}/${names.stagingPvc} has no volume to hand over.`);
    const pvName = pv.metadata.name ?? "";
    if (pv.metadata.labels?.[Label.BackupRestore] !== name) {
      // Step 1: Retain on the staging volume, remembering its policy, and label it so it can be found later.
      actions.push({
        op: "patch",
        target: pvPath(pvName),
        patch: {
          metadata: { labels: { [Label.CreatedBy]: CREATED_BY, ...labels }, annotations: { [ORIGINAL_RECLAIM_ANNOTATION]: pv.spec.persistentVolumeReclaimPolicy ?? "Delete" } },
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
      actions.push({ op: "patch", target: pvPath(pvName), patch: { spec: { claimRef: { apiVersion: "v1", kind: "PersistentVolumeClaim", namespace, name: target, uid: null, resourceVersion: null } } } });
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
    if (isTrue(status.conditions, CLEANED_UP)) return result();
    actions.push(
      { op: "delete", target: { apiVersion: "batch/v1", kind: "Job", namespace: workerNs, name: names.job } },
      ...(cross ? [{ op: "delete" as const, target: { apiVersion: "v1", kind: "PersistentVolumeClaim", namespace: workerNs, name: names.stagingPvc } }] : []),
    );
    // A failed handover must not leave a volume stuck on Retain: give it back its policy so it is reclaimed.
    const pv = w.handoverPv;
    if (phase === BackupRestorePhase.Failed && pv?.metadata.annotations?.[ORIGINAL_RECLAIM_ANNOTATION]) {
      actions.push({ op: "patch", target: { apiVersion: "v1", kind: "PersistentVolume", name: pv.metadata.name ?? "" }, patch: { spec: { persistentVolumeReclaimPolicy: pv.metadata.annotations[ORIGINAL_RECLAIM_ANNOTATION] } } });
    }
    condition(CLEANED_UP, ConditionStatus.True, "Deleted", "The worker Job and any staging PVC were deleted.");
    return result();
  }
}

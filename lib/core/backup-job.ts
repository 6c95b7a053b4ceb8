// The BackupJob lifecycle as a pure decision: given what is observed and the time, which actions move the
// BackupJob one step on, and what its status becomes. No I/O; lib/k8s/drivers performs the actions.
//
//   NotStarted --PVC and snapshot class resolved--> CreatingSnapshot --snapshot ready (moved across if the
//   repository is elsewhere), PVC from it, worker Job--> WaitingBackup --pod running--> BackingUp
//   --Job complete--> Finished | --failed anywhere--> Failed; then the temporary objects are deleted.
import { mappedSnapshotClass } from "../api/config.ts";
import type { BackupJobStatus } from "../api/backup-job.ts";
import type { BackupJobSpec } from "../api/backup-job.ts";
import { BackupJobConditionType, BackupJobPhase } from "../api/backup-job.ts";
import { ConditionStatus, JobType, Label } from "../api/constants.ts";
import {
  movedContent,
  ownedMetadata,
  ownerRef,
  pvcFromSnapshot,
  volumeSnapshot,
  workerJob,
  workerSourcePath,
  type Manifest,
  type WalleConfig,
} from "./builders.ts";
import { isTrue, rfc3339, setCondition } from "./conditions.ts";
import { backupJobChildNames } from "./names.ts";
import { jobFailureMessage, type Job, type Pod, type Pvc, type StorageClass, type VolumeSnapshot, type VolumeSnapshotClass, type VolumeSnapshotContent } from "./objects.ts";
import { workerReport } from "./worker-result.ts";

export interface ObjectRef {
  readonly apiVersion: string;
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
}

export type Action =
  | { readonly op: "create"; readonly manifest: Manifest }
  | { readonly op: "patch"; readonly target: ObjectRef; readonly patch: unknown }
  | { readonly op: "delete"; readonly target: ObjectRef };

export interface KubeEvent {
  readonly type: "Normal" | "Warning";
  readonly reason: string;
  readonly note: string;
}

export interface Decision<S> {
  readonly actions: readonly Action[];
  readonly status: S;
  readonly events: readonly KubeEvent[];
}

export interface BackupJobRef {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly generation?: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly creationTimestamp?: string;
}

/** What the driver read for one step. `null` means read and absent; `undefined` means not read in this phase. */
export interface BackupJobWorld {
  readonly job: BackupJobRef;
  readonly spec: BackupJobSpec;
  readonly status: BackupJobStatus;
  readonly pvc?: Pvc | null;
  readonly storageClass?: StorageClass | null;
  readonly snapshotClasses?: readonly VolumeSnapshotClass[];
  readonly sourceSnapshot?: VolumeSnapshot | null;
  readonly sourceContent?: VolumeSnapshotContent | null;
  readonly movedContent?: VolumeSnapshotContent | null;
  readonly movedSnapshot?: VolumeSnapshot | null;
  readonly workerJob?: Job | null;
  readonly workerPods?: readonly Pod[];
}

export const CLEANED_UP = "CleanedUp";

const SNAP_API = "snapshot.storage.k8s.io/v1";

/** Where the worker runs: the repository's namespace, which defaults to the install namespace. */
export function workerNamespace(spec: BackupJobSpec, config: WalleConfig): string {
  return spec.repository.namespace ?? config.installNamespace;
}

export function isTerminal(phase: string | undefined): boolean {
  return phase === BackupJobPhase.Finished || phase === BackupJobPhase.Failed;
}

/** The reads a step needs, by phase, so an event costs only the API requests that can change the decision. */
export function backupJobReads(status: BackupJobStatus, crossNamespace: boolean): ReadonlySet<keyof BackupJobWorld> {
  switch (status.phase ?? BackupJobPhase.NotStarted) {
    case BackupJobPhase.NotStarted:
      return new Set(["pvc", "storageClass", "snapshotClasses", "sourceSnapshot"]);
    case BackupJobPhase.CreatingSnapshot:
      return new Set(crossNamespace ? ["pvc", "sourceSnapshot", "sourceContent", "movedContent", "movedSnapshot"] : ["pvc", "sourceSnapshot"]);
    case BackupJobPhase.WaitingBackup:
    case BackupJobPhase.BackingUp:
      return new Set(["workerJob", "workerPods"]);
    case BackupJobPhase.Finished:
    case BackupJobPhase.Failed:
      return new Set();
  }
}

interface Step {
  actions: Action[];
  status: BackupJobStatus;
  events: KubeEvent[];
}

export function decideBackupJob(w: BackupJobWorld, config: WalleConfig, now: Date): Decision<BackupJobStatus> {
  const names = backupJobChildNames(w.job);
  const workerNs = workerNamespace(w.spec, config);
  const cross = workerNs !== w.job.namespace;
  const step: Step = { actions: [], status: { ...w.status, observedGeneration: w.job.generation }, events: [] };
  const phase = w.status.phase ?? BackupJobPhase.NotStarted;
  const owner = { namespace: w.job.namespace, ref: ownerRef("BackupJob", w.job.name, w.job.uid) };
  const labels = {
    [Label.BackupJob]: w.job.name,
    [Label.OwnerNamespace]: w.job.namespace,
    [Label.BackupJobType]: JobType.Backup,
    ...(w.job.labels[Label.BackupSet] ? { [Label.BackupSet]: w.job.labels[Label.BackupSet] } : {}),
    ...(w.job.labels[Label.BackupSchedule] ? { [Label.BackupSchedule]: w.job.labels[Label.BackupSchedule] } : {}),
  };
  const meta = (name: string, namespace: string | undefined) => ownedMetadata(name, namespace, labels, owner);

  const fail = (reason: string, message: string, snapshot = false) => {
    step.status = {
      ...step.status,
      phase: BackupJobPhase.Failed,
      finishTime: rfc3339(now),
      conditions: setCondition(
        snapshot ? setCondition(step.status.conditions, { type: BackupJobConditionType.SnapshotReady, status: ConditionStatus.False, reason, message }, now) : step.status.conditions,
        { type: BackupJobConditionType.BackupState, status: ConditionStatus.False, reason, message },
        now,
      ),
    };
    step.events.push({ type: "Warning", reason: "BackupFailed", note: message });
    return done();
  };
  const done = (): Decision<BackupJobStatus> => step;

  switch (phase) {
    case BackupJobPhase.NotStarted:
      return start();
    case BackupJobPhase.CreatingSnapshot:
      return awaitSnapshot();
    case BackupJobPhase.WaitingBackup:
    case BackupJobPhase.BackingUp:
      return awaitWorker();
    case BackupJobPhase.Finished:
    case BackupJobPhase.Failed:
      return cleanUp();
  }

  function start(): Decision<BackupJobStatus> {
    const pvcName = w.spec.sourcePvc;
    if (w.pvc === null) return fail("PvcNotFound", `PersistentVolumeClaim ${w.job.namespace}/${pvcName} was not found.`, true);
    if (!w.pvc) return done();
    if (w.pvc.status?.phase !== "Bound") {
      const waited = (now.getTime() - Date.parse(w.job.creationTimestamp ?? rfc3339(now))) / 1000;
      if (waited > config.snapshotTimeoutSeconds) {
        return fail("PvcNotBound", `PersistentVolumeClaim ${w.job.namespace}/${pvcName} is still ${w.pvc.status?.phase ?? "Pending"} after ${Math.round(waited)} s; only a bound PVC can be snapshotted.`, true);
      }
      return done();
    }
    const cls = snapshotClassFor(w.pvc, w.storageClass ?? null, w.snapshotClasses ?? [], config);
    if ("error" in cls) return fail("NoSnapshotClass", cls.error, true);
    if (w.sourceSnapshot === null) {
      step.actions.push({ op: "create", manifest: volumeSnapshot(meta(names.sourceSnapshot, w.job.namespace), { pvc: pvcName }, cls.name) });
    }
    step.status = {
      ...step.status,
      phase: BackupJobPhase.CreatingSnapshot,
      startTime: step.status.startTime ?? rfc3339(now),
      conditions: setCondition(step.status.conditions, {
        type: BackupJobConditionType.SnapshotReady, status: ConditionStatus.False, reason: "Creating",
        message: `Creating VolumeSnapshot ${w.job.namespace}/${names.sourceSnapshot} of ${pvcName} with class ${cls.name}.`,
      }, now),
    };
    step.events.push({ type: "Normal", reason: "CreatingSnapshot", note: `Creating VolumeSnapshot ${names.sourceSnapshot} of PVC ${pvcName} with class ${cls.name}.` });
    return done();
  }

  function snapshotTimedOut(): boolean {
    const since = Date.parse(w.status.startTime ?? rfc3339(now));
    return (now.getTime() - since) / 1000 > config.snapshotTimeoutSeconds;
  }

  function awaitSnapshot(): Decision<BackupJobStatus> {
    // Once moved across, the storage snapshot lives on in the repository namespace only.
    const moved = cross ? w.movedSnapshot : undefined;
    if (moved?.status?.error?.message) return fail("SnapshotFailed", `VolumeSnapshot ${workerNs}/${names.movedSnapshot} failed: ${moved.status.error.message}`, true);
    const source = w.sourceSnapshot;
    if (source?.status?.error?.message) return fail("SnapshotFailed", `VolumeSnapshot ${w.job.namespace}/${names.sourceSnapshot} failed: ${source.status.error.message}`, true);
    const snapshotReady = cross ? moved?.status?.readyToUse === true : source?.status?.readyToUse === true;
    const sourceReady = source?.status?.readyToUse === true;

    if (cross && !snapshotReady) {
      if (w.movedContent === null) {
        const content = w.sourceContent;
        const handle = content?.status?.snapshotHandle;
        if (!sourceReady || !content || !handle) return waitOrTimeOut(source === null);
        step.actions.push({
          op: "create",
          manifest: movedContent(meta(names.movedContent, undefined), {
            driver: content.spec.driver, snapshotHandle: handle, className: content.spec.volumeSnapshotClassName,
          }, { namespace: workerNs, name: names.movedSnapshot }),
        });
      }
      if (w.movedSnapshot === null) {
        step.actions.push({ op: "create", manifest: volumeSnapshot(meta(names.movedSnapshot, workerNs), { content: names.movedContent }) });
      }
      return waitOrTimeOut(false);
    }
    if (!snapshotReady) return waitOrTimeOut(source === null);

    if (cross && source) {
      // DESIGN §3 step 3: Retain on the original content, then delete the original pair; the storage snapshot
      // survives, owned only by the moved pair, and the tenant namespace keeps nothing of the backup. The
      // content goes before its snapshot: a run cut short between the two leaves the snapshot, which still
      // names nothing and which cleanup deletes by name, rather than a Retain content nobody could find.
      const content = w.sourceContent;
      if (content) {
        const ref = { apiVersion: SNAP_API, kind: "VolumeSnapshotContent", name: content.metadata.name ?? "" };
        if (content.spec.deletionPolicy !== "Retain") step.actions.push({ op: "patch", target: ref, patch: { spec: { deletionPolicy: "Retain" } } });
        step.actions.push({ op: "delete", target: ref });
      }
      step.actions.push({ op: "delete", target: { apiVersion: SNAP_API, kind: "VolumeSnapshot", namespace: w.job.namespace, name: names.sourceSnapshot } });
    }
    const ready = cross ? moved : source;
    const size = String(ready?.status?.restoreSize ?? "") || w.pvc?.status?.capacity?.storage || w.pvc?.spec.resources?.requests?.storage || "1Gi";
    const snapshotTime = ready?.status?.creationTime ?? rfc3339(now);
    step.actions.push({
      op: "create",
      manifest: pvcFromSnapshot(meta(names.pvc, workerNs), cross ? names.movedSnapshot : names.sourceSnapshot, quantity(size), w.pvc?.spec.storageClassName),
    });
    step.actions.push({
      op: "create",
      manifest: workerJob({
        metadata: meta(names.job, workerNs),
        config,
        command: JobType.Backup,
        repositorySecret: w.spec.repository.name,
        volume: { claimName: names.pvc, readOnly: true },
        env: {
          SOURCE_PATH: workerSourcePath,
          PVC_NAME: w.spec.sourcePvc,
          PVC_NAMESPACE: w.job.namespace,
          SNAPSHOT_TIME: snapshotTime,
          PROGRESS_SUBJECT: `/apis/ros.io/v1/namespaces/${w.job.namespace}/backupjobs/${w.job.name}`,
          ...(w.job.labels[Label.BackupSchedule] ? { BACKUP_SCHEDULE: w.job.labels[Label.BackupSchedule] } : {}),
        },
      }),
    });
    step.status = {
      ...step.status,
      phase: BackupJobPhase.WaitingBackup,
      conditions: setCondition(step.status.conditions, {
        type: BackupJobConditionType.SnapshotReady, status: ConditionStatus.True, reason: "SnapshotReady",
        message: `VolumeSnapshot ${cross ? `${workerNs}/${names.movedSnapshot}` : `${w.job.namespace}/${names.sourceSnapshot}`} is ready.`,
      }, now),
    };
    step.events.push({ type: "Normal", reason: "SnapshotReady", note: `Snapshot of PVC ${w.spec.sourcePvc} is ready; starting worker Job ${workerNs}/${names.job}.` });
    return done();
  }

  function waitOrTimeOut(snapshotMissing: boolean): Decision<BackupJobStatus> {
    if (snapshotTimedOut()) {
      return fail("SnapshotTimeout", `Stuck in CreatingSnapshot: VolumeSnapshot ${w.job.namespace}/${names.sourceSnapshot} was not ready within ${config.snapshotTimeoutSeconds} s.`, true);
    }
    if (snapshotMissing) {
      // Deleted before it was ready. Making it again could race a cleanup that another instance just did, so
      // the BackupJob fails and says why; a new BackupJob starts clean.
      return fail("SnapshotDeleted", `VolumeSnapshot ${w.job.namespace}/${names.sourceSnapshot} was deleted before it was ready.`, true);
    }
    return done();
  }

  function awaitWorker(): Decision<BackupJobStatus> {
    const job = w.workerJob;
    if (job === null) {
      // The Job is gone before Walle read its result (deleted by hand, or a TTL): nothing can be reported.
      return fail("WorkerLost", `Stuck in ${phase}: worker Job ${workerNs}/${names.job} disappeared before it finished.`);
    }
    if (!job) return done();
    const { outcome, pod, message, result } = workerReport(job, w.workerPods ?? []);
    if (!outcome) {
      if (phase === BackupJobPhase.WaitingBackup && pod?.status?.phase === "Running") {
        step.status = { ...step.status, phase: BackupJobPhase.BackingUp };
        step.events.push({ type: "Normal", reason: "BackingUp", note: `Worker pod ${pod.metadata.name} is backing up PVC ${w.spec.sourcePvc}.` });
      }
      return done();
    }
    step.status = {
      ...step.status,
      ...(result?.snapshotId ? { snapshotId: result.snapshotId } : {}),
      ...(result?.backup ? {
        summary: {
          filesNew: result.backup.filesNew,
          filesChanged: result.backup.filesChanged,
          filesUnmodified: result.backup.filesUnmodified,
          dataAdded: result.backup.dataAdded,
          totalBytesProcessed: result.backup.bytesProcessed,
          totalDuration: result.backup.durationSeconds,
        },
      } : {}),
      logs: (result?.message ?? message ?? jobFailureMessage(job) ?? "").slice(-4096),
      progress: undefined,
    };
    if (outcome === "Complete" && (!result || result.outcome !== "Failed")) {
      const reason = result?.reason ?? "Completed";
      const message = result?.message ?? `Worker Job ${workerNs}/${names.job} completed.`;
      step.status = {
        ...step.status,
        phase: BackupJobPhase.Finished,
        finishTime: rfc3339(now),
        conditions: setCondition(step.status.conditions, {
          type: BackupJobConditionType.BackupState, status: ConditionStatus.True, reason, message,
        }, now),
      };
      step.events.push({ type: result?.outcome === "Warning" ? "Warning" : "Normal", reason: "BackupFinished", note: `${message}${result?.snapshotId ? ` Snapshot ${result.snapshotId.slice(0, 8)}.` : ""}` });
      return done();
    }
    const why = result ? `${result.message}` : (jobFailureMessage(job) ?? "The worker Job failed.");
    return fail(result?.reason ?? "WorkerFailed", why);
  }

  function cleanUp(): Decision<BackupJobStatus> {
    if (isTrue(w.status.conditions, CLEANED_UP)) return done();
    const del = (apiVersion: string, kind: string, name: string, namespace?: string): Action => ({ op: "delete", target: { apiVersion, kind, name, ...(namespace ? { namespace } : {}) } });
    step.actions.push(
      del("batch/v1", "Job", names.job, workerNs),
      del("v1", "PersistentVolumeClaim", names.pvc, workerNs),
      del(SNAP_API, "VolumeSnapshot", names.sourceSnapshot, w.job.namespace),
      ...(cross ? [del(SNAP_API, "VolumeSnapshot", names.movedSnapshot, workerNs)] : []),
    );
    step.status = {
      ...step.status,
      conditions: setCondition(step.status.conditions, {
        type: CLEANED_UP, status: ConditionStatus.True, reason: "Deleted",
        message: "The worker Job, its PVC and the VolumeSnapshots were deleted.",
      }, now),
    };
    return done();
  }
}

/** The class for a PVC's snapshot: the operator's mapping, else the default class of the PVC's CSI driver. */
export function snapshotClassFor(
  pvc: Pvc,
  storageClass: StorageClass | null,
  classes: readonly VolumeSnapshotClass[],
  config: Pick<WalleConfig, "snapClassMappings">,
): { name: string } | { error: string } {
  const scName = pvc.spec.storageClassName ?? "";
  const mapped = mappedSnapshotClass({ backup_job_image: "-", cluster_name: "-", snap_class_mappings: [...config.snapClassMappings] }, scName);
  if (mapped) return { name: mapped };
  if (!storageClass) {
    return { error: `StorageClass "${scName}" of PVC ${pvc.metadata.name} was not found, and snap_class_mappings names no VolumeSnapshotClass for it.` };
  }
  const driver = storageClass.provisioner;
  const defaults = classes.filter((c) => c.driver === driver && c.metadata.annotations?.["snapshot.storage.kubernetes.io/is-default-class"] === "true");
  const chosen = defaults[0];
  if (defaults.length === 1 && chosen?.metadata.name) return { name: chosen.metadata.name };
  if (defaults.length > 1) {
    return { error: `Several VolumeSnapshotClasses are the default for driver ${driver}: map storage class ${scName} in snap_class_mappings.` };
  }
  return { error: `No VolumeSnapshotClass for driver ${driver} (storage class ${scName}): add one marked snapshot.storage.kubernetes.io/is-default-class: "true", or map the storage class in snap_class_mappings.` };
}


/** A restoreSize in bytes ("1234") as a quantity a PVC accepts; quantities pass through. */
function quantity(size: string): string {
  if (!/^\d+$/.test(size)) return size;
  const bytes = Math.max(Number(size), 1);
  return `${Math.ceil(bytes / 1024 ** 2)}Mi`;
}

// The BackupJob lifecycle as a reconciler of the pure core: the reads each phase needs, and a decision made of
// named transitions. No I/O; the executor in lib/k8s performs what it decides.
//
//   NotStarted --PVC and snapshot class resolved--> CreatingSnapshot --snapshot ready (moved across if the
//   repository is elsewhere), PVC from it, worker Job--> WaitingBackup --pod running--> BackingUp
//   --Job complete--> Finished | --failed anywhere--> Failed. Reaching Finished or Failed also cleans up: the
//   status (with the result) is written first, then the temporary objects are deleted.
//
// Snapshot hooks (lib/core/hooks.ts) fit around the snapshot: the before-hook runs in NotStarted, once the PVC is
// bound and a class fits it, and the snapshot is made only after it succeeded; the after-hook runs once the snapshot
// is cut, and before any failure is recorded once the before-hook has run. Each is written into the status as
// started before it runs, so a run cut short is found and its after-hook still runs.
import { BackupJobConditionType, BackupJobPhase, HookOutcome, type BackupJobSpec, type BackupJobStatus } from "../api/backup-job.ts";
import { ConditionReason, EventReason } from "../api/conditions.ts";
import { mappedSnapshotClass } from "../api/config.ts";
import { ConditionStatus, CREATED_BY, JobType, Label, WalleAnnotation } from "../api/constants.ts";
import type { BackupJob } from "../api/parse.ts";
import {
  movedContent,
  ownedMetadata,
  ownerRef,
  pvcFromSnapshot,
  repositoryLabel,
  volumeSnapshot,
  workerActions,
  workerSourcePath,
  type Manifest,
  type WalleConfig,
} from "./builders.ts";
import { findCondition, isCleanedUp, rfc3339, setCondition, type ConditionInput } from "./conditions.ts";
import { failsInvalid, failsRefused, type Action, type Decision, type KubeEvent, type ReadPlan, type Reconciler } from "./decision.ts";
import { backupJobChildNames } from "./names.ts";
import {
  jobFailureMessage,
  jobHasRunningPod,
  jobOutcome,
  type Job,
  type ObjectSummary,
  type Pod,
  type Pvc,
  type StorageClass,
  type VolumeSnapshot,
  type VolumeSnapshotClass,
  type VolumeSnapshotContent,
} from "./objects.ts";
import { allowsPrivilegedWorkers, fidelityCondition, needsNamespaceRead, PRIVILEGED_WORKERS_ANNOTATION, workerMode } from "./privileges.ts";
import { noResult, workerPodsRead, workerReport } from "./worker-result.ts";
import {
  afterHookDue,
  beforeHookFailed,
  DEFAULT_HOOK_TIMEOUT_SECONDS,
  describeHook,
  hookLimitSeconds,
  hooksCondition,
  mayStream,
  planHooks,
  planStream,
  runningHook,
  type HookWhich,
  type StreamPlan,
} from "./hooks.ts";

export interface BackupJobRef {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly generation?: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly creationTimestamp?: string;
}

/** What a step read. `null` means read and absent; `undefined` means not read in this phase. */
export interface BackupJobObserved {
  readonly pvc?: Pvc | null;
  readonly storageClass?: StorageClass | null;
  readonly snapshotClasses?: readonly VolumeSnapshotClass[];
  readonly sourceSnapshot?: VolumeSnapshot | null;
  readonly sourceContent?: VolumeSnapshotContent | null;
  readonly movedContent?: VolumeSnapshotContent | null;
  readonly movedSnapshot?: VolumeSnapshot | null;
  readonly workerJob?: Job | null;
  readonly workerPods?: readonly Pod[];
  /** Walle's Jobs that use the repository (label ros.io/repository), read once the snapshot is ready. */
  readonly repositoryJobs?: readonly Job[];
  /** The worker's namespace, read with them when its annotation decides the worker's mode (lib/core/privileges.ts). */
  readonly workerNamespace?: ObjectSummary | null;
  /** The pods of the BackupJob's namespace, read in NotStarted until its snapshot hooks are planned. */
  readonly pods?: readonly Pod[];
}

export interface BackupJobWorld extends BackupJobObserved {
  readonly job: BackupJobRef;
  readonly spec: BackupJobSpec;
  readonly status: BackupJobStatus;
}

const SNAP_API = "snapshot.storage.k8s.io/v1";

/** How long a worker of a schedule's first run waits for the one that creates the repository. */
const REPOSITORY_WAIT = "10m";

/** Where the worker runs: the repository's namespace, which defaults to the install namespace. */
export function workerNamespace(spec: BackupJobSpec, config: WalleConfig): string {
  return spec.repository.namespace ?? config.installNamespace;
}

export function isTerminal(phase: string | undefined): boolean {
  return phase === BackupJobPhase.Finished || phase === BackupJobPhase.Failed;
}

/** Ended and cleaned up: nothing can move it again. */
export function isSettled(status: { phase?: string; conditions?: readonly { type: string; status: string }[] } | undefined): boolean {
  return isTerminal(status?.phase) && isCleanedUp(status?.conditions);
}

function refOf(bj: BackupJob): BackupJobRef {
  return {
    namespace: bj.metadata.namespace ?? "",
    name: bj.metadata.name ?? "",
    uid: bj.metadata.uid ?? "",
    generation: bj.metadata.generation,
    labels: bj.metadata.labels ?? {},
    ...(bj.metadata.annotations ? { annotations: bj.metadata.annotations } : {}),
    creationTimestamp: bj.metadata.creationTimestamp,
  };
}

/**
 * The reads a step needs, by phase, so an event costs only the API requests that can change the decision.
 * A later round reads what depends on an earlier one: the PVC's StorageClass, the snapshot's content, the
 * worker's pods once its Job has ended.
 */
export function backupJobReads(bj: BackupJob, seen: Partial<BackupJobObserved>, config: WalleConfig): ReadPlan<BackupJobObserved> {
  const ref = refOf(bj);
  const names = backupJobChildNames(ref);
  const workerNs = workerNamespace(bj.spec, config);
  const ns = ref.namespace;
  switch (bj.status?.phase ?? BackupJobPhase.NotStarted) {
    case BackupJobPhase.NotStarted: {
      const scName = seen.pvc?.spec.storageClassName;
      // A backup of a command's output starts its worker at once: who else uses the repository decides whether now.
      const stream = bj.status?.stream !== undefined || mayStream(bj.spec, seen.pods);
      if (seen.pvc === undefined) {
        // The snapshot is created without a look first: its name is deterministic, so a duplicate meets AlreadyExists.
        // The pods say which hooks run where (their annotations, the containers that mount the PVC).
        return {
          pvc: { get: "PersistentVolumeClaim", name: bj.spec.sourcePvc, namespace: ns },
          snapshotClasses: { list: "VolumeSnapshotClass", cached: true },
          ...(bj.status?.hooks ? {} : { pods: { list: "Pod", namespace: ns } }),
        };
      }
      return {
        ...(scName && seen.storageClass === undefined ? { storageClass: { get: "StorageClass", name: scName } } : {}),
        ...(stream && seen.repositoryJobs === undefined ? { repositoryJobs: repositoryJobsRead(bj, workerNs) } : {}),
      };
    }
    case BackupJobPhase.CreatingSnapshot: {
      // Once the snapshot is ready, who else uses the repository decides whether the worker starts now.
      const repository = {
        repositoryJobs: repositoryJobsRead(bj, workerNs),
        ...(needsNamespaceRead(workerNs, config.installNamespace, bj.spec.workerSecurityContext)
          ? { workerNamespace: { get: "Namespace" as const, name: workerNs } }
          : {}),
      } as const;
      if (workerNs === ns) {
        if (seen.sourceSnapshot === undefined) return { sourceSnapshot: { get: "VolumeSnapshot", name: names.sourceSnapshot, namespace: ns } };
        // A snapshot with an error: its content says whether the storage refused it (final) or the controller retries.
        const erred =
          seen.sourceSnapshot?.status?.error && seen.sourceSnapshot.status.readyToUse !== true
            ? seen.sourceSnapshot.status.boundVolumeSnapshotContentName
            : undefined;
        if (erred && seen.sourceContent === undefined) return { sourceContent: { get: "VolumeSnapshotContent", name: erred } };
        return seen.sourceSnapshot?.status?.readyToUse === true && seen.repositoryJobs === undefined ? repository : {};
      }
      if (seen.sourceSnapshot === undefined) {
        return {
          sourceSnapshot: { get: "VolumeSnapshot", name: names.sourceSnapshot, namespace: ns },
          movedContent: { get: "VolumeSnapshotContent", name: names.movedContent },
          movedSnapshot: { get: "VolumeSnapshot", name: names.movedSnapshot, namespace: workerNs },
        };
      }
      const bound = seen.sourceSnapshot?.status?.boundVolumeSnapshotContentName;
      return {
        ...(bound && seen.sourceContent === undefined ? { sourceContent: { get: "VolumeSnapshotContent", name: bound } } : {}),
        ...(seen.movedSnapshot?.status?.readyToUse === true && seen.repositoryJobs === undefined ? repository : {}),
      };
    }
    case BackupJobPhase.WaitingBackup:
    case BackupJobPhase.BackingUp: {
      if (seen.workerJob === undefined) return { workerJob: { get: "Job", name: names.job, namespace: workerNs } };
      const pods = seen.workerPods === undefined ? workerPodsRead(seen.workerJob, workerNs, names.job) : undefined;
      return pods ? { workerPods: pods } : {};
    }
    case BackupJobPhase.Finished:
    case BackupJobPhase.Failed:
      return {};
  }
}

/** Walle's Jobs that use the BackupJob's repository: who else writes to it now. */
function repositoryJobsRead(bj: BackupJob, workerNs: string) {
  return {
    list: "Job",
    namespace: workerNs,
    labelSelector: `${Label.CreatedBy}=${CREATED_BY},${Label.Repository}=${repositoryLabel(bj.spec.repository.name)}`,
  } as const;
}

export function backupJobWorld(bj: BackupJob, seen: Partial<BackupJobObserved>): BackupJobWorld {
  return { ...seen, job: refOf(bj), spec: bj.spec, status: bj.status ?? {} };
}

/** One step in the making: the transitions below add to it, and `decision()` hands it out. */
class Step {
  readonly actions: Action[] = [];
  /** Performed once the status is written: clean-up that must not run before the result is stored. */
  then: Decision<BackupJobStatus>["then"];
  readonly events: KubeEvent[] = [];
  status: BackupJobStatus;
  requeueAfter: number | undefined;

  readonly w: BackupJobWorld;
  readonly config: WalleConfig;
  readonly now: Date;
  readonly names: ReturnType<typeof backupJobChildNames>;
  readonly workerNs: string;
  readonly cross: boolean;
  readonly phase: BackupJobPhase;
  private readonly labels: Record<string, string>;

  constructor(w: BackupJobWorld, config: WalleConfig, now: Date) {
    this.w = w;
    this.config = config;
    this.now = now;
    this.names = backupJobChildNames(w.job);
    this.workerNs = workerNamespace(w.spec, config);
    this.cross = this.workerNs !== w.job.namespace;
    this.phase = w.status.phase ?? BackupJobPhase.NotStarted;
    this.status = { ...w.status, observedGeneration: w.job.generation };
    this.labels = {
      [Label.BackupJob]: w.job.name,
      [Label.OwnerNamespace]: w.job.namespace,
      [Label.BackupJobType]: JobType.Backup,
      ...(w.job.labels[Label.BackupSet] ? { [Label.BackupSet]: w.job.labels[Label.BackupSet] } : {}),
      ...(w.job.labels[Label.BackupSchedule] ? { [Label.BackupSchedule]: w.job.labels[Label.BackupSchedule] } : {}),
    };
  }

  meta(name: string, namespace: string | undefined): Manifest["metadata"] {
    return ownedMetadata(name, namespace, this.labels, { namespace: this.w.job.namespace, ref: ownerRef("BackupJob", this.w.job.name, this.w.job.uid) });
  }

  condition(input: ConditionInput): void {
    this.status = { ...this.status, conditions: setCondition(this.status.conditions, input, this.now) };
  }

  event(type: KubeEvent["type"], reason: KubeEvent["reason"], note: string): void {
    this.events.push({ type, reason, note });
  }

  /** Seconds since `time` (the creation of the BackupJob, or the start of its snapshot). */
  secondsSince(time: string | undefined): number {
    return (this.now.getTime() - Date.parse(time ?? rfc3339(this.now))) / 1000;
  }

  decision(): Decision<BackupJobStatus> {
    return {
      actions: this.actions,
      ...(this.then ? { then: this.then } : {}),
      status: this.status,
      events: this.events,
      ...(this.requeueAfter !== undefined ? { requeueAfter: this.requeueAfter } : {}),
    };
  }
}

type Outcome = Decision<BackupJobStatus>;

export function decideBackupJob(w: BackupJobWorld, config: WalleConfig, now: Date): Outcome {
  const s = new Step(w, config, now);
  const waiting = hookInProgress(s);
  if (waiting) return waiting;
  switch (s.phase) {
    case BackupJobPhase.NotStarted:
      return start(s);
    case BackupJobPhase.CreatingSnapshot:
      return awaitSnapshot(s);
    case BackupJobPhase.WaitingBackup:
    case BackupJobPhase.BackingUp:
      return awaitWorker(s);
    case BackupJobPhase.Finished:
    case BackupJobPhase.Failed:
      return cleanUp(s);
  }
}

/** NotStarted → CreatingSnapshot: the PVC is bound and a snapshot class fits it. */
function start(s: Step): Outcome {
  const { w, config } = s;
  const pvcName = w.spec.sourcePvc;
  if (w.pvc === null) return fail(s, ConditionReason.PvcNotFound, `PersistentVolumeClaim ${w.job.namespace}/${pvcName} was not found.`, true);
  if (!w.pvc) return s.decision();
  if (!s.status.stream && !s.status.hooks && w.pods) {
    const planned = planStream(w.spec, w.pods, pvcName, w.job.namespace);
    if (planned && "error" in planned) return fail(s, ConditionReason.NoCommandTarget, planned.error);
    if (planned) s.status = { ...s.status, stream: planned.stream };
  }
  if (s.status.stream) return startStream(s, s.status.stream);
  if (w.pvc.status?.phase !== "Bound") {
    const waited = s.secondsSince(w.job.creationTimestamp);
    if (waited > config.snapshotTimeoutSeconds) {
      return fail(
        s,
        ConditionReason.PvcNotBound,
        `PersistentVolumeClaim ${w.job.namespace}/${pvcName} is still ${w.pvc.status?.phase ?? "Pending"} after ${Math.round(waited)} s; only a bound PVC can be snapshotted.`,
        true,
      );
    }
    s.requeueAfter = Math.ceil(config.snapshotTimeoutSeconds - waited);
    return s.decision();
  }
  const cls = snapshotClassFor(w.pvc, w.storageClass ?? null, w.snapshotClasses ?? [], config);
  if ("error" in cls) return fail(s, ConditionReason.NoSnapshotClass, cls.error, true);
  // Only now that a snapshot can be taken does the application get told to prepare for one.
  if (!s.status.hooks && w.pods) {
    const plan = planHooks(w.spec, w.pods, pvcName, w.job.namespace);
    if ("error" in plan) return fail(s, ConditionReason.InvalidHook, plan.error);
    if (plan.note) s.condition({ type: BackupJobConditionType.Hooks, status: ConditionStatus.True, reason: ConditionReason.NoHookTarget, message: plan.note });
    if (plan.hooks) s.status = { ...s.status, hooks: plan.hooks };
  }
  const hooks = s.status.hooks;
  if (hooks?.before && !hooks.before.startTime) return runHook(s, "before");
  if (hooks?.before && beforeHookFailed(hooks))
    return fail(s, ConditionReason.BeforeHookFailed, `No snapshot was taken. ${describeHook("before", hooks.before)}`);
  if (!w.sourceSnapshot) {
    const meta = s.meta(s.names.sourceSnapshot, w.job.namespace);
    const size = w.pvc.status?.capacity?.storage ?? w.pvc.spec.resources?.requests?.storage;
    const annotations = {
      ...(w.pvc.spec.storageClassName ? { [WalleAnnotation.SourceStorageClass]: w.pvc.spec.storageClassName } : {}),
      ...(size ? { [WalleAnnotation.SourceSize]: size } : {}),
    };
    s.actions.push({ op: "create", manifest: volumeSnapshot({ ...meta, annotations }, { pvc: pvcName }, cls.name) });
  }
  s.status = { ...s.status, phase: BackupJobPhase.CreatingSnapshot, startTime: s.status.startTime ?? rfc3339(s.now) };
  s.condition({
    type: BackupJobConditionType.SnapshotReady,
    status: ConditionStatus.False,
    reason: ConditionReason.Creating,
    message: `Creating VolumeSnapshot ${w.job.namespace}/${s.names.sourceSnapshot} of ${pvcName} with class ${cls.name}.`,
  });
  s.event("Normal", EventReason.CreatingSnapshot, `Creating VolumeSnapshot ${s.names.sourceSnapshot} of PVC ${pvcName} with class ${cls.name}.`);
  s.requeueAfter = config.snapshotTimeoutSeconds;
  return s.decision();
}

/** CreatingSnapshot: wait for the snapshot (moving it across first when the repository is elsewhere). */
function awaitSnapshot(s: Step): Outcome {
  const { w, names, workerNs, cross } = s;
  // Once moved across, the storage snapshot lives on in the repository namespace only.
  // The storage's answer is final: an error on a content comes from the driver (csi-snapshotter's CreateSnapshot or
  // its check of a pre-provisioned handle). An error on the snapshot alone is the snapshot controller's, often a
  // moment's (a content its cache has not seen yet, a conflict), and it retries: the wait goes on, showing it.
  const moved = cross ? w.movedSnapshot : undefined;
  const movedRefused = cross ? w.movedContent?.status?.error?.message : undefined;
  if (movedRefused) return fail(s, ConditionReason.SnapshotFailed, `VolumeSnapshot ${workerNs}/${names.movedSnapshot} failed: ${movedRefused}`, true);
  const source = w.sourceSnapshot;
  const sourceRefused = w.sourceContent?.status?.error?.message;
  if (sourceRefused && source?.status?.readyToUse !== true) {
    return fail(s, ConditionReason.SnapshotFailed, `VolumeSnapshot ${w.job.namespace}/${names.sourceSnapshot} failed: ${sourceRefused}`, true);
  }
  const ready = cross ? moved?.status?.readyToUse === true : source?.status?.readyToUse === true;
  // Cut (the storage has it, whether or not it is ready to use yet): the application may go on.
  const cut = ready || source?.status?.readyToUse === true || source?.status?.creationTime !== undefined;
  if (cut && afterHookDue(s.status.hooks)) return runHook(s, "after");
  if (cross && !ready) return moveSnapshot(s);
  if (!ready) return waitOrTimeOut(s, source === null);
  if (cross && source) releaseSource(s);
  return startWorker(s);
}

/** docs/architecture.md, Security: moving a snapshot, step 2: a pre-provisioned content and snapshot in the repository namespace, naming the same storage snapshot. */
function moveSnapshot(s: Step): Outcome {
  const { w, names, workerNs } = s;
  if (w.movedContent === null) {
    const content = w.sourceContent;
    const handle = content?.status?.snapshotHandle;
    if (w.sourceSnapshot?.status?.readyToUse !== true || !content || !handle) return waitOrTimeOut(s, w.sourceSnapshot === null);
    s.actions.push({
      op: "create",
      manifest: movedContent(
        s.meta(names.movedContent, undefined),
        {
          driver: content.spec.driver,
          snapshotHandle: handle,
          className: content.spec.volumeSnapshotClassName,
          sourceVolumeMode: content.spec.sourceVolumeMode,
          annotations: content.metadata.annotations,
        },
        { namespace: workerNs, name: names.movedSnapshot },
      ),
    });
  }
  if (w.movedSnapshot === null)
    s.actions.push({ op: "create", manifest: volumeSnapshot(s.meta(names.movedSnapshot, workerNs), { content: names.movedContent }) });
  return waitOrTimeOut(s, false);
}

/**
 * docs/architecture.md, Security: moving a snapshot, step 3: Retain on the original content, then delete the original pair; the storage snapshot survives,
 * owned only by the moved pair, and the tenant namespace keeps nothing of the backup. The content goes before its
 * snapshot: a run cut short between the two leaves the snapshot, which still names nothing and which clean-up
 * deletes by name, rather than a Retain content nobody could find. A content already being deleted is not deleted
 * again: the snapshot controller's bound-protection finalizer keeps it until its snapshot is gone, so only the
 * snapshot's deletion moves it on.
 */
function releaseSource(s: Step): void {
  const content = s.w.sourceContent;
  if (content) {
    const ref = { apiVersion: SNAP_API, kind: "VolumeSnapshotContent", name: content.metadata.name ?? "" } as const;
    if (content.spec.deletionPolicy !== "Retain") s.actions.push({ op: "patch", target: ref, patch: { spec: { deletionPolicy: "Retain" } } });
    if (!content.metadata.deletionTimestamp) s.actions.push({ op: "delete", target: ref });
  }
  s.actions.push({ op: "delete", target: { apiVersion: SNAP_API, kind: "VolumeSnapshot", namespace: s.w.job.namespace, name: s.names.sourceSnapshot } });
}

/**
 * Whether the repository has room for this worker: not while a prune holds it (restic's exclusive lock would keep
 * the worker waiting anyway, its deadline running), and not beyond maxWorkersPerRepository at once. Decided from
 * the Jobs in the cluster, as K8up's locker does; the wait ends at a later step, when a Job has finished.
 */
function repositoryTurn(s: Step): string | undefined {
  const { w, config } = s;
  const pruning = otherJobs(s).find((j) => j.metadata?.labels?.[Label.BackupJobType] === JobType.Prune);
  if (pruning) return `Waiting for prune Job ${s.workerNs}/${pruning.metadata?.name} to finish with repository ${w.spec.repository.name}.`;
  const writers = otherWriters(s);
  if (writers.length >= config.maxWorkersPerRepository) {
    return `Waiting for a turn: ${writers.length} workers already use repository ${w.spec.repository.name} (at most ${config.maxWorkersPerRepository} at once).`;
  }
  return undefined;
}

/** The other Jobs of Walle's that use the BackupJob's repository and have not ended. */
const otherJobs = (s: Step) => (s.w.repositoryJobs ?? []).filter((j) => jobOutcome(j) === undefined && j.metadata?.name !== s.names.job);

/** Of those, the backup and restore workers. */
const otherWriters = (s: Step) =>
  otherJobs(s).filter((j) => j.metadata?.labels?.[Label.BackupJobType] === JobType.Backup || j.metadata?.labels?.[Label.BackupJobType] === JobType.Restore);

/** Seconds between looks at a repository that has no room yet. */
const REPOSITORY_RETRY_SECONDS = 30;

/** The repository's turn: undefined when it has room now, else the waiting decision (lib/core repositoryTurn). */
function awaitTurn(s: Step): Outcome | undefined {
  const wait = repositoryTurn(s);
  if (wait) {
    s.condition({ type: BackupJobConditionType.BackupState, status: ConditionStatus.False, reason: ConditionReason.RepositoryBusy, message: wait });
    s.requeueAfter = REPOSITORY_RETRY_SECONDS;
    return s.decision();
  }
  if (findCondition(s.status.conditions, BackupJobConditionType.BackupState)?.reason === ConditionReason.RepositoryBusy) {
    s.condition({
      type: BackupJobConditionType.BackupState,
      status: ConditionStatus.False,
      reason: ConditionReason.Preparing,
      message: `The repository has room; starting worker Job ${s.workerNs}/${s.names.job}.`,
    });
  }
  return undefined;
}

/** The worker's environment for a backup of this BackupJob, whatever its source. */
function backupEnv(s: Step, snapshotTime: string): Record<string, string> {
  const { w } = s;
  return {
    PVC_NAME: w.spec.sourcePvc,
    PVC_NAMESPACE: w.job.namespace,
    SNAPSHOT_TIME: snapshotTime,
    PROGRESS_SUBJECT: `/apis/ros.io/v1/namespaces/${w.job.namespace}/backupjobs/${w.job.name}`,
    ...(w.job.labels[Label.BackupSchedule] ? { BACKUP_SCHEDULE: w.job.labels[Label.BackupSchedule] } : {}),
    // Set here, these win over the repository Secret's INITIALIZE_REPO (env before envFrom). One worker at a time may
    // create a repository: two restic inits of one repository at once break it for good (the one whose config save
    // fails removes the config the other saved, docs/architecture.md, restic), so while another worker uses the
    // repository, this one waits for it to exist rather than create it.
    ...(w.job.annotations?.[WalleAnnotation.InitializesRepository] === "false" || otherWriters(s).length > 0
      ? { INITIALIZE_REPO: "false", REPOSITORY_WAIT: REPOSITORY_WAIT }
      : {}),
  };
}

/**
 * NotStarted → WaitingBackup without a snapshot: a worker Job that takes the command's output from the reconcile
 * function (which runs the command by pods/exec; the worker has no API token) into restic backup --stdin.
 */
function startStream(s: Step, stream: StreamPlan): Outcome {
  const { w, names, workerNs, config } = s;
  if (!config.progressSinkUrl) {
    return fail(
      s,
      ConditionReason.StreamUnavailable,
      "A backup of a command's output streams through the reconcile function, and it has no URL of its own for the worker (WALLE_PROGRESS_SINK_URL).",
    );
  }
  const waiting = awaitTurn(s);
  if (waiting) return waiting;
  s.actions.push(
    ...workerActions({
      metadata: s.meta(names.job, workerNs),
      config,
      command: JobType.Backup,
      repositorySecret: w.spec.repository.name,
      shownIn: w.job.namespace,
      env: {
        ...backupEnv(s, rfc3339(s.now)),
        STREAM_URL: new URL(
          `streams/${encodeURIComponent(w.job.namespace)}/${encodeURIComponent(w.job.name)}`,
          config.progressSinkUrl.replace(/\/?$/, "/"),
        ).toString(),
        STDIN_FILENAME: stream.fileName,
      },
    }),
  );
  s.status = { ...s.status, phase: BackupJobPhase.WaitingBackup, startTime: s.status.startTime ?? rfc3339(s.now) };
  const what = `the output of ${stream.from === "Annotation" ? "the pod's ros.io/backup-command" : "backupCommand"} in ${stream.pod}/${stream.container}`;
  s.condition({
    type: BackupJobConditionType.BackupState,
    status: ConditionStatus.False,
    reason: ConditionReason.Preparing,
    message: `Backing up ${what} as ${stream.fileName}; no volume snapshot is taken.`,
  });
  s.event("Normal", EventReason.BackingUp, `Starting worker Job ${workerNs}/${names.job} to back up ${what}.`);
  return s.decision();
}

/** CreatingSnapshot → WaitingBackup: a PVC from the ready snapshot, and the worker Job that mounts it read-only. */
function startWorker(s: Step): Outcome {
  const { w, names, workerNs, cross, config } = s;
  const waiting = awaitTurn(s);
  if (waiting) return waiting;
  const ready = cross ? w.movedSnapshot : w.sourceSnapshot;
  const carried = w.sourceSnapshot?.metadata.annotations ?? {};
  // At least the snapshot's restoreSize (a provisioner refuses less), and no less than the source PVC had.
  const size =
    largestQuantity([
      String(ready?.status?.restoreSize ?? ""),
      carried[WalleAnnotation.SourceSize],
      w.pvc?.status?.capacity?.storage,
      w.pvc?.spec.resources?.requests?.storage,
    ]) ?? "1Gi";
  const storageClass = carried[WalleAnnotation.SourceStorageClass] ?? w.pvc?.spec.storageClassName;
  // The PVC belongs to the snapshot it is made from, so deleting the snapshot at the end takes the PVC with it.
  const snapshotOwner = {
    apiVersion: SNAP_API,
    kind: "VolumeSnapshot",
    name: ready?.metadata.name ?? (cross ? names.movedSnapshot : names.sourceSnapshot),
    uid: ready?.metadata.uid ?? "",
  };
  const pvcMeta = { ...s.meta(names.pvc, workerNs), ...(snapshotOwner.uid ? { ownerReferences: [snapshotOwner] } : {}) };
  s.actions.push({ op: "create", manifest: pvcFromSnapshot(pvcMeta, cross ? names.movedSnapshot : names.sourceSnapshot, quantity(size), storageClass) });
  const mode = workerMode(allowsPrivilegedWorkers(workerNs, config.installNamespace, w.workerNamespace), w.spec.workerSecurityContext);
  s.condition(fidelityCondition(mode, JobType.Backup, workerNs));
  s.actions.push(
    ...workerActions({
      metadata: s.meta(names.job, workerNs),
      config,
      command: JobType.Backup,
      mode,
      repositorySecret: w.spec.repository.name,
      shownIn: w.job.namespace,
      volume: { claimName: names.pvc, readOnly: true },
      env: { SOURCE_PATH: workerSourcePath, ...backupEnv(s, ready?.status?.creationTime ?? rfc3339(s.now)) },
    }),
  );
  s.status = { ...s.status, phase: BackupJobPhase.WaitingBackup };
  s.condition({
    type: BackupJobConditionType.SnapshotReady,
    status: ConditionStatus.True,
    reason: ConditionReason.SnapshotReady,
    message: `VolumeSnapshot ${cross ? `${workerNs}/${names.movedSnapshot}` : `${w.job.namespace}/${names.sourceSnapshot}`} is ready.`,
  });
  s.event("Normal", EventReason.SnapshotReady, `Snapshot of PVC ${w.spec.sourcePvc} is ready; starting worker Job ${workerNs}/${names.job}.`);
  return s.decision();
}

function waitOrTimeOut(s: Step, snapshotMissing: boolean): Outcome {
  const { config, names, w, workerNs } = s;
  const waited = s.secondsSince(w.status.startTime);
  // The snapshot controller's own complaint, if it has one: shown while it retries, and kept in the timeout's message.
  const complaint =
    s.cross && w.movedSnapshot?.status?.error?.message
      ? `VolumeSnapshot ${workerNs}/${names.movedSnapshot}: ${w.movedSnapshot.status.error.message}`
      : w.sourceSnapshot?.status?.error?.message
        ? `VolumeSnapshot ${w.job.namespace}/${names.sourceSnapshot}: ${w.sourceSnapshot.status.error.message}`
        : undefined;
  if (waited > config.snapshotTimeoutSeconds) {
    return fail(
      s,
      ConditionReason.SnapshotTimeout,
      `Stuck in CreatingSnapshot: VolumeSnapshot ${w.job.namespace}/${names.sourceSnapshot} was not ready within ${config.snapshotTimeoutSeconds} s.${complaint ? ` Last error: ${complaint}` : ""}`,
      true,
    );
  }
  if (complaint) {
    s.condition({
      type: BackupJobConditionType.SnapshotReady,
      status: ConditionStatus.False,
      reason: ConditionReason.Creating,
      message: `Not ready yet; the snapshot controller retries until ${config.snapshotTimeoutSeconds} s have passed. ${complaint}`,
    });
  }
  if (snapshotMissing) {
    // Deleted before it was ready. Making it again could race a clean-up that another instance just did, so
    // the BackupJob fails and says why; a new BackupJob starts clean.
    return fail(s, ConditionReason.SnapshotDeleted, `VolumeSnapshot ${w.job.namespace}/${names.sourceSnapshot} was deleted before it was ready.`, true);
  }
  s.requeueAfter = Math.ceil(config.snapshotTimeoutSeconds - waited);
  return s.decision();
}

/** WaitingBackup → BackingUp once the worker's pod runs; then Finished or Failed from the worker's result. */
function awaitWorker(s: Step): Outcome {
  const { w, names, workerNs, phase } = s;
  const job = w.workerJob;
  // The Job is gone before Walle read its result (deleted by hand, or a TTL): nothing can be reported.
  if (job === null) return fail(s, ConditionReason.WorkerLost, `Stuck in ${phase}: worker Job ${workerNs}/${names.job} disappeared before it finished.`);
  if (!job) return s.decision();
  const report = workerReport(job, w.workerPods ?? []);
  const { outcome, message, result } = report;
  if (!outcome) {
    if (phase === BackupJobPhase.WaitingBackup && jobHasRunningPod(job)) {
      s.status = { ...s.status, phase: BackupJobPhase.BackingUp };
      s.event("Normal", EventReason.BackingUp, `Worker Job ${workerNs}/${names.job} is backing up PVC ${w.spec.sourcePvc}.`);
    }
    return s.decision();
  }
  s.status = {
    ...s.status,
    ...(result?.snapshotId ? { snapshotId: result.snapshotId } : {}),
    ...(result?.backup
      ? {
          summary: {
            filesNew: result.backup.filesNew,
            filesChanged: result.backup.filesChanged,
            filesUnmodified: result.backup.filesUnmodified,
            dataAdded: result.backup.dataAdded,
            totalBytesProcessed: result.backup.bytesProcessed,
            totalDuration: result.backup.durationSeconds,
          },
        }
      : {}),
    logs: (result?.message ?? message ?? jobFailureMessage(job) ?? "").slice(-4096),
    progress: undefined,
  };
  const missing = noResult(report, { namespace: workerNs, name: names.job });
  if (missing) return fail(s, ConditionReason.NoResult, missing);
  if (outcome === "Complete" && result?.outcome !== "Failed") return finish(s, result);
  const why = result ? result.message : (jobFailureMessage(job) ?? "The worker Job failed.");
  return fail(s, result?.reason ?? ConditionReason.WorkerFailed, result?.reason === "Incomplete" ? `${why}${unprivilegedHint(s)}` : why);
}

/** What to do about files an unprivileged worker could not read: said where the failure is read. */
function unprivilegedHint(s: Step): string {
  const fidelity = findCondition(s.status.conditions, BackupJobConditionType.FullFidelity);
  if (fidelity?.status !== ConditionStatus.False) return "";
  return ` The worker ran unprivileged (see condition FullFidelity): give the BackupJob a workerSecurityContext with the application's user, or ask an admin to allow full-fidelity workers in namespace ${s.workerNs} (annotation ${PRIVILEGED_WORKERS_ANNOTATION}=true).`;
}

/** → Finished, with the worker's own reason and message. */
function finish(s: Step, result: ReturnType<typeof workerReport>["result"]): Outcome {
  const message = result?.message ?? `Worker Job ${s.workerNs}/${s.names.job} completed.`;
  s.status = { ...s.status, phase: BackupJobPhase.Finished, finishTime: rfc3339(s.now) };
  s.condition({ type: BackupJobConditionType.BackupState, status: ConditionStatus.True, reason: result?.reason ?? ConditionReason.Completed, message });
  s.event("Normal", EventReason.BackupFinished, `${message}${result?.snapshotId ? ` Snapshot ${result.snapshotId.slice(0, 8)}.` : ""}`);
  return settle(s);
}

/**
 * → Failed, with the reason in BackupState (and in SnapshotReady when the snapshot is what failed). Once a
 * before-hook has run, the after-hook runs first, and the failure is decided again after it.
 */
function fail(s: Step, reason: ConditionInput["reason"], message: string, snapshot = false): Outcome {
  if (afterHookDue(s.status.hooks)) return runHook(s, "after");
  s.status = { ...s.status, phase: BackupJobPhase.Failed, finishTime: rfc3339(s.now) };
  if (snapshot) s.condition({ type: BackupJobConditionType.SnapshotReady, status: ConditionStatus.False, reason, message });
  s.condition({ type: BackupJobConditionType.BackupState, status: ConditionStatus.False, reason, message });
  s.event("Warning", EventReason.BackupFailed, message);
  return settle(s);
}

/** The temporary objects a phase may have made, by name. */
function children(s: Step, phase: BackupJobPhase, pvcGoesWithSnapshot = false): Action[] {
  const { names, workerNs, cross, w } = s;
  const del = (apiVersion: string, kind: "Job" | "PersistentVolumeClaim" | "VolumeSnapshot", name: string, namespace: string): Action => ({
    op: "delete",
    target: { apiVersion, kind, name, namespace },
  });
  const snapshots = [
    del(SNAP_API, "VolumeSnapshot", names.sourceSnapshot, w.job.namespace),
    ...(cross ? [del(SNAP_API, "VolumeSnapshot", names.movedSnapshot, workerNs)] : []),
  ];
  switch (phase) {
    case BackupJobPhase.NotStarted:
      return [];
    case BackupJobPhase.CreatingSnapshot:
      return snapshots;
    default:
      return [
        del("batch/v1", "Job", names.job, workerNs),
        ...(pvcGoesWithSnapshot ? [] : [del("v1", "PersistentVolumeClaim", names.pvc, workerNs)]),
        ...snapshots,
      ];
  }
}

/**
 * A BackupJob that has just ended: its status (with the result) is written saying its clean-up has begun, then
 * what the run made is deleted, then CleanedUp is written. A run cut short in between is still unsettled, so
 * the resync finishes its clean-up.
 */
function settle(s: Step): Outcome {
  // The PVC this version made belongs to its snapshot (startWorker): the garbage collector deletes it with it.
  const made = children(s, s.phase, true);
  if (made.length === 0) {
    s.condition(cleanedUp);
    return s.decision();
  }
  s.condition({
    ...cleanedUp,
    status: ConditionStatus.False,
    reason: ConditionReason.Deleting,
    message: "Deleting the worker Job, its PVC and the VolumeSnapshots.",
  });
  s.then = { actions: made, status: { ...s.status, conditions: setCondition(s.status.conditions, cleanedUp, s.now) } };
  return s.decision();
}

const cleanedUp: ConditionInput = {
  type: BackupJobConditionType.CleanedUp,
  status: ConditionStatus.True,
  reason: ConditionReason.Deleted,
  message: "The worker Job, its PVC and the VolumeSnapshots were deleted.",
};

/** How long a hook may run in each container. */
const hookTimeout = (config: WalleConfig) => config.hookTimeoutSeconds ?? DEFAULT_HOOK_TIMEOUT_SECONDS;

/** Starts a planned hook: its start is written, then the executor runs it (Decision.hook) and records its end. */
function runHook(s: Step, which: HookWhich): Outcome {
  const run = s.status.hooks?.[which];
  if (!run) return s.decision();
  const timeoutSeconds = hookTimeout(s.config);
  s.status = { ...s.status, hooks: { ...s.status.hooks, [which]: { ...run, startTime: rfc3339(s.now) } } };
  noteHooks(s);
  return {
    actions: [],
    status: s.status,
    events: s.events,
    hook: { which, namespace: s.w.job.namespace, backupJob: s.w.job.name, targets: run.targets, command: run.command, timeoutSeconds },
    requeueAfter: hookLimitSeconds(run, timeoutSeconds),
  };
}

/**
 * Before any other step: a hook that another instance runs is waited for, to its deadline; past it, its runner
 * is known to have stopped, and the hook reads Interrupted. Either way the Hooks condition and an Event say how
 * the hooks went.
 */
function hookInProgress(s: Step): Outcome | undefined {
  const which = runningHook(s.status.hooks);
  const run = which ? s.status.hooks?.[which] : undefined;
  if (which && run) {
    const limit = hookLimitSeconds(run, hookTimeout(s.config));
    const waited = s.secondsSince(run.startTime);
    if (waited < limit) {
      s.requeueAfter = Math.ceil(limit - waited);
      return s.decision();
    }
    s.status = { ...s.status, hooks: { ...s.status.hooks, [which]: { ...run, finishTime: rfc3339(s.now), outcome: HookOutcome.Interrupted } } };
  }
  noteHooks(s);
  return undefined;
}

/** The Hooks condition from the status's hooks, and an Event for each hook whose end it did not show yet. */
function noteHooks(s: Step): void {
  const hooks = s.status.hooks;
  if (!hooks) return;
  const shown = findCondition(s.status.conditions, BackupJobConditionType.Hooks)?.message ?? "";
  for (const which of ["before", "after"] as const) {
    const run = hooks[which];
    if (!run?.finishTime) continue;
    const text = describeHook(which, run);
    if (!shown.includes(text))
      s.event(
        run.outcome === HookOutcome.Succeeded ? "Normal" : "Warning",
        run.outcome === HookOutcome.Succeeded ? EventReason.HookSucceeded : EventReason.HookFailed,
        text,
      );
  }
  const c = hooksCondition(hooks);
  s.condition({
    type: BackupJobConditionType.Hooks,
    status: c.status === "True" ? ConditionStatus.True : ConditionStatus.False,
    reason: c.reason,
    message: c.message,
  });
}

/** A BackupJob that ended before clean-up was part of ending (or whose clean-up was undone): clean up now. */
function cleanUp(s: Step): Outcome {
  if (afterHookDue(s.status.hooks)) return runHook(s, "after");
  if (isCleanedUp(s.w.status.conditions)) return s.decision();
  s.actions.push(...children(s, BackupJobPhase.BackingUp));
  s.condition(cleanedUp);
  return s.decision();
}

/** How a BackupJob fails when Walle cannot read it, or the API server refuses what a step must make. */
const failing = { kind: "BackupJob", failed: BackupJobPhase.Failed, condition: BackupJobConditionType.BackupState, event: EventReason.BackupFailed } as const;

export const backupJobReconciler: Reconciler<BackupJob, BackupJobObserved, BackupJobWorld, BackupJobStatus> = {
  kind: "BackupJob",
  reads: backupJobReads,
  world: backupJobWorld,
  decide: decideBackupJob,
  invalid: failsInvalid(failing),
  refused: failsRefused(failing),
};

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
  return {
    error: `No VolumeSnapshotClass for driver ${driver} (storage class ${scName}): add one marked snapshot.storage.kubernetes.io/is-default-class: "true", or map the storage class in snap_class_mappings.`,
  };
}

const QUANTITY_FACTORS: Readonly<Record<string, number>> = {
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** Bytes of a Kubernetes storage quantity (`5Gi`, `500M`, `1048576`, `1.5Gi`, `1e9`); undefined if it is none. */
export function quantityBytes(q: string): number | undefined {
  const m = /^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)|[eE]([0-9]+))?$/.exec(q.trim());
  if (!m) return undefined;
  return Number(m[1]) * (m[3] !== undefined ? 10 ** Number(m[3]) : (QUANTITY_FACTORS[m[2] ?? ""] ?? 1));
}

/** The largest of some storage quantities, as written; undefined when none parses. */
export function largestQuantity(sizes: readonly (string | undefined)[]): string | undefined {
  let best: { size: string; bytes: number } | undefined;
  for (const size of sizes) {
    const bytes = size ? quantityBytes(size) : undefined;
    if (size && bytes !== undefined && bytes > (best?.bytes ?? -1)) best = { size, bytes };
  }
  return best?.size;
}

/** A restoreSize in bytes ("1234") as a quantity a PVC accepts; quantities pass through. */
function quantity(size: string): string {
  if (!/^\d+$/.test(size)) return size;
  const bytes = Math.max(Number(size), 1);
  return `${Math.ceil(bytes / 1024 ** 2)}Mi`;
}

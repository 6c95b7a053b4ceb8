// A BackupSchedule at one tick, as a pure decision: which of its tasks are due (lib/core/schedule.ts), the
// BackupSet and BackupJobs of a due backup (named after its slot, so a second tick in the same window meets
// AlreadyExists), prune and check worker Jobs kept off a repository that someone writes to, the history bounded by
// keepSucceeded/keepFailed, and the status with the original's semantics (state from the BackupReady, CheckOk and
// PruneOk conditions, last*Run, scheduler timestamps) plus nextBackupRun.
import { BackupScheduleConditionType, BackupScheduleState, type BackupScheduleStatus } from "../api/backup-schedule.ts";
import { BackupSetState } from "../api/backup-set.ts";
import { isSettledSet } from "./backup-set.ts";
import { ConditionReason, EventReason } from "../api/conditions.ts";
import { API_VERSION, ConditionStatus, CREATED_BY, JobType, Label, WalleAnnotation } from "../api/constants.ts";
import type { BackupSchedule } from "../api/parse.ts";
import { ownerRef, repositoryLabel, workerActions, type Manifest, type WalleConfig } from "./builders.ts";
import { findCondition, rfc3339, setCondition, type ConditionInput } from "./conditions.ts";
import type { Action, Decision, KubeEvent, ObjectRef } from "./decision.ts";
import { boundedName, shortHash } from "./names.ts";
import { jobFailureMessage, jobOutcome, type Job, type ObjectSummary } from "./objects.ts";
import type { Selection } from "./plans.ts";
import { dueSlot, slotId, type Due, type Timing } from "./schedule.ts";

export interface ScheduleWorld {
  readonly schedule: BackupSchedule;
  /** The schedule's BackupSets (label ros.io/backup-schedule). */
  readonly sets: readonly ObjectSummary[];
  /** Walle's Jobs labelled with the schedule; its prune and check Jobs are those of that type (jobsOf). */
  readonly jobs: readonly Job[];
  /** Walle's Jobs that use the schedule's repository (label ros.io/repository in its namespace), any owner. */
  readonly repositoryJobs: readonly Job[];
  /** The PVCs the plans select now; read only when a backup is due (`backupDue`). */
  readonly selection?: Selection;
  /**
   * When the tick read the cluster's Jobs and found no worker Job of Walle's active; absent otherwise. A prune started
   * now may remove the locks of this cluster's workers taken before then (STALE_LOCKS_BEFORE): their processes ended.
   */
  readonly quietSince?: Date;
}

/** A run asked for by an event or the ros.io/backup-requested annotation instead of the clock: its id names the BackupSet. */
export interface ManualRun {
  readonly requestId: string;
}

/**
 * The run the schedule's ros.io/backup-requested annotation asks for, while Walle has not yet handled that value
 * (status.lastBackupRequest). Level-triggered: whoever sees it first (the reconcile function on the schedule's
 * event, or the next tick when that event was lost) runs it, under the name the value gives.
 */
export function pendingBackupRequest(s: {
  metadata: { annotations?: Readonly<Record<string, string>> };
  status?: { lastBackupRequest?: { id?: string } };
}): ManualRun | undefined {
  const id = s.metadata.annotations?.[WalleAnnotation.BackupRequested];
  return id && id !== s.status?.lastBackupRequest?.id ? { requestId: id } : undefined;
}

type Task = "backup" | "prune" | "check";

const created = (s: BackupSchedule) => new Date(s.metadata.creationTimestamp ?? 0);
const parseTime = (t: string | undefined) => (t ? new Date(t) : undefined);

function timingOf(s: BackupSchedule, task: Task): Timing | undefined {
  switch (task) {
    case "backup":
      return s.spec.schedule
        ? { cron: s.spec.schedule, ...(s.spec.timezone ? { timezone: s.spec.timezone } : {}) }
        : s.spec.interval
          ? { interval: s.spec.interval }
          : undefined;
    case "prune":
      return s.spec.prune ? { interval: s.spec.prune.interval } : undefined;
    case "check":
      return s.spec.check ? { interval: s.spec.check.interval } : undefined;
  }
}

const TIMESTAMP = { backup: "backupTimestamp", prune: "pruneTimestamp", check: "checkTimestamp" } as const;

/**
 * When a task is due. A new interval schedule backs up at once, as the original did; prune and check come one
 * interval after the schedule was made, when there is something to prune.
 */
export function taskDue(s: BackupSchedule, task: Task, now: Date): Due | undefined {
  const timing = timingOf(s, task);
  if (!timing) return undefined;
  return dueSlot(timing, parseTime(s.status?.scheduler?.[TIMESTAMP[task]]), created(s), now, task === "backup");
}

/** Whether this tick will start a backup of the schedule, so the pods and PVCs must be read. */
export function backupDue(s: BackupSchedule, now: Date): boolean {
  return !s.spec.suspend && taskDue(s, "backup", now)?.slot !== undefined;
}

const newestFirst = <T extends { metadata: { creationTimestamp?: string; name?: string } }>(items: readonly T[]): T[] =>
  [...items].sort(
    (a, b) =>
      (b.metadata.creationTimestamp ?? "").localeCompare(a.metadata.creationTimestamp ?? "") || (b.metadata.name ?? "").localeCompare(a.metadata.name ?? ""),
  );
export const isActiveJob = (j: Job) => jobOutcome(j) === undefined;
const finishedJobsOf = (set: ObjectSummary): number | undefined => {
  const stats = (set.status as { statistics?: { finishedJobs?: unknown } } | undefined)?.statistics;
  return typeof stats?.finishedJobs === "number" ? stats.finishedJobs : undefined;
};

/** The BackupSet of one run: `<schedule>-<slot>`, or `<schedule>-run-<hash of the request>` for a run asked for. */
export function backupSetName(schedule: string, run: Date | ManualRun): string {
  return run instanceof Date ? boundedName([schedule, slotId(run)]) : boundedName([schedule, "run", shortHash(run.requestId, 10)]);
}

/** A BackupJob of a set, in its PVC's namespace. */
export function scheduledJobName(set: string, pvc: string): string {
  return boundedName([set, pvc]);
}

class ScheduleStep {
  readonly actions: Action[] = [];
  readonly events: KubeEvent[] = [];
  status: BackupScheduleStatus;
  readonly w: ScheduleWorld;
  readonly config: WalleConfig;
  readonly now: Date;
  readonly name: string;
  readonly repoNs: string;
  /** The BackupSet this step makes, if any. */
  started: string | undefined;
  /** What a run asked for came to, in words (the note of its Event). */
  outcome: string | undefined;

  constructor(w: ScheduleWorld, config: WalleConfig, now: Date) {
    this.w = w;
    this.config = config;
    this.now = now;
    this.name = w.schedule.metadata.name ?? "";
    this.repoNs = w.schedule.spec.repository.namespace ?? config.installNamespace;
    this.status = { ...(w.schedule.status ?? {}), observedGeneration: w.schedule.metadata.generation };
  }

  condition(input: ConditionInput): void {
    this.status = { ...this.status, conditions: setCondition(this.status.conditions, input, this.now, this.w.schedule.metadata.generation) };
  }

  event(type: KubeEvent["type"], reason: KubeEvent["reason"], note: string): void {
    this.events.push({ type, reason, note });
  }

  /** The Event that says how a run ended up (started, or why not). */
  outcomeEvent(type: KubeEvent["type"], reason: KubeEvent["reason"], note: string): void {
    this.event(type, reason, note);
    this.outcome = note;
  }

  scheduler(task: Task, slot: Date): void {
    this.status = { ...this.status, scheduler: { ...this.status.scheduler, [TIMESTAMP[task]]: rfc3339(slot) } };
  }

  labels(type?: JobType): Record<string, string> {
    return { [Label.CreatedBy]: CREATED_BY, [Label.BackupSchedule]: this.name, ...(type ? { [Label.BackupJobType]: type } : {}) };
  }

  decision(): Decision<BackupScheduleStatus> {
    return { actions: this.actions, status: this.status, events: this.events };
  }
}

/**
 * The schedule's decision at `now`: start what is due, bound the history, and say where things are. With
 * `manual`, a backup runs now whatever the clock says, suspended or not (the scheduler's timestamps stay, so the grid
 * does not move); when it answers the schedule's ros.io/backup-requested annotation, the status says so.
 */
export function decideSchedule(w: ScheduleWorld, config: WalleConfig, now: Date, manual?: ManualRun): Decision<BackupScheduleStatus> {
  const s = new ScheduleStep(w, config, now);
  const backup = taskDue(w.schedule, "backup", now);
  if (manual) startBackup(s, manual, undefined);
  if (w.schedule.spec.suspend) {
    // Nothing new starts; what runs goes on, and its outcome still shows.
    s.status = { ...s.status, nextBackupRun: undefined };
  } else if (backup?.error) {
    s.condition({
      type: BackupScheduleConditionType.BackupReady,
      status: ConditionStatus.False,
      reason: ConditionReason.InvalidSpec,
      message: `The schedule cannot be evaluated: ${backup.error}`,
    });
  } else {
    if (backup?.slot && !manual) startBackup(s, backup.slot, backup);
    // With the next slot after a run asked for, the clock's grid stays where it was.
    s.status = { ...s.status, ...(backup?.next ? { nextBackupRun: rfc3339(backup.slot && manual ? backup.slot : backup.next) } : {}) };
  }
  if (!w.schedule.spec.suspend && !manual) {
    maintain(s, "prune");
    maintain(s, "check");
  }
  // A run asked for does that alone: the clock's tick bounds the history.
  bookkeeping(s, !manual);
  if (manual && manual.requestId === w.schedule.metadata.annotations?.[WalleAnnotation.BackupRequested]) {
    s.status = {
      ...s.status,
      lastBackupRequest: {
        id: manual.requestId,
        time: rfc3339(now),
        ...(s.started ? { backupSet: s.started } : {}),
        message: s.outcome ?? "No backup started: the PVCs were not read.",
      },
    };
  }
  return s.decision();
}

/** Only the status the schedule's runs give it, from its BackupSets and its prune and check Jobs: nothing starts or goes. */
export function settledSchedule(w: ScheduleWorld, config: WalleConfig, now: Date): Decision<BackupScheduleStatus> {
  const s = new ScheduleStep(w, config, now);
  bookkeeping(s, false);
  return s.decision();
}

/** A due backup: one BackupSet, one BackupJob per selected PVC, unless the previous run is still going. */
function startBackup(s: ScheduleStep, run: Date | ManualRun, due: Due | undefined): void {
  const { w } = s;
  const setName = backupSetName(s.name, run);
  const slot = run instanceof Date ? run : undefined;
  const running = newestFirst(w.sets).find((set) => !isSettledSet(set.status) && set.metadata.name !== setName);
  if (running && slot) {
    // As in the original: a run that has not finished makes the next one skip its turn.
    s.scheduler("backup", slot);
    s.event("Warning", EventReason.BackupSkipped, `Skipped the backup due at ${rfc3339(slot)}: BackupSet ${running.metadata.name} has not finished.`);
    return;
  }
  const selection = w.selection;
  if (!selection) return;
  if (selection.errors.length > 0) {
    const message = `No backup started: ${selection.errors.join("; ")}`;
    if (slot) s.scheduler("backup", slot);
    s.condition({ type: BackupScheduleConditionType.BackupReady, status: ConditionStatus.False, reason: ConditionReason.InvalidPlan, message });
    s.outcomeEvent("Warning", EventReason.InvalidPlan, message);
    return;
  }
  for (const skip of selection.skipped.slice(0, MAX_SKIP_EVENTS)) {
    s.event("Warning", EventReason.PvcSkipped, `Skipped PVC ${skip.namespace}/${skip.pvc}: ${skip.reason}.`);
  }
  if (slot) s.scheduler("backup", slot);
  if (selection.targets.length === 0) {
    s.outcomeEvent(
      "Normal",
      EventReason.NothingToBackUp,
      `No PVC matched the plans${selection.skipped.length ? ` (${selection.skipped.length} skipped)` : ""}; no BackupSet was made.`,
    );
    return;
  }
  const setRef: ObjectRef = { apiVersion: API_VERSION, kind: "BackupSet", name: setName };
  const uid = w.schedule.metadata.uid ?? "";
  const labels = { ...s.labels(), [Label.BackupSet]: setName };
  const count = String(selection.targets.length);
  s.actions.push({
    op: "create",
    manifest: {
      apiVersion: API_VERSION,
      kind: "BackupSet",
      metadata: {
        name: setName,
        labels: s.labels(),
        annotations: { [WalleAnnotation.BackupJobs]: count },
        ownerReferences: [ownerRef("BackupSchedule", s.name, uid)],
      },
      spec: { selector: { matchLabels: { [Label.BackupSchedule]: s.name, [Label.BackupSet]: setName } } },
    },
  });
  // A run taken up again after a tick died part-way: the PVCs selected now are the ones it makes.
  const resumed = w.sets.find((set) => set.metadata.name === setName);
  if (resumed && resumed.metadata.annotations?.[WalleAnnotation.BackupJobs] !== count) {
    s.actions.push({ op: "patch", target: setRef, patch: { metadata: { annotations: { [WalleAnnotation.BackupJobs]: count } } } });
  }
  // Until a run of this schedule has backed something up, its repository may not exist: one worker may create it,
  // and the others wait for it, so `restic init` runs once instead of racing (two inits could leave two keys).
  const maybeNew = !w.sets.some((set) => (finishedJobsOf(set) ?? 0) > 0);
  for (const [i, t] of selection.targets.entries()) {
    const plan = w.schedule.spec.plans[t.plan];
    const securityContext = plan?.workerSecurityContext ?? w.schedule.spec.workerSecurityContext;
    const manifest: Manifest = {
      apiVersion: API_VERSION,
      kind: "BackupJob",
      metadata: {
        name: scheduledJobName(setName, t.pvc),
        namespace: t.namespace,
        labels,
        ...(maybeNew && i > 0 ? { annotations: { [WalleAnnotation.InitializesRepository]: "false" } } : {}),
      },
      spec: {
        sourcePvc: t.pvc,
        repository: { name: w.schedule.spec.repository.name, namespace: s.repoNs },
        ...(plan?.beforeSnapshot ? { beforeSnapshot: plan.beforeSnapshot } : {}),
        ...(plan?.afterSnapshot ? { afterSnapshot: plan.afterSnapshot } : {}),
        ...(plan?.backupCommand ? { backupCommand: plan.backupCommand } : {}),
        ...(securityContext ? { workerSecurityContext: securityContext } : {}),
      },
    };
    s.actions.push({ op: "create", manifest, ownedBy: setRef });
  }
  s.status = { ...s.status, lastBackupRun: rfc3339(s.now) };
  s.started = setName;
  const caughtUp = due && due.missed > 0 ? ` ${due.missed}${due.missed >= 1000 ? " or more" : ""} earlier slots were missed; this one run catches up.` : "";
  s.outcomeEvent("Normal", EventReason.BackupStarted, `Started BackupSet ${setName} with ${selection.targets.length} BackupJobs.${caughtUp}`);
}

/** Skipped PVCs each get an Event, up to this many per run; the count is in the run's Event. */
const MAX_SKIP_EVENTS = 20;

const WORKER_COMMAND = { prune: JobType.Prune, check: JobType.Check } as const;

/** The schedule's prune or check Jobs, newest first. */
const jobsOf = (w: ScheduleWorld, task: "prune" | "check"): Job[] =>
  newestFirst(w.jobs.filter((j) => j.metadata?.labels?.[Label.BackupJobType] === WORKER_COMMAND[task]));

/** A due prune or check: a worker Job in the repository's namespace, once nobody else uses the repository. */
function maintain(s: ScheduleStep, task: "prune" | "check"): void {
  const { w, config } = s;
  const due = taskDue(w.schedule, task, s.now);
  const conditionType = task === "prune" ? BackupScheduleConditionType.PruneOk : BackupScheduleConditionType.CheckOk;
  if (!due?.slot) return;
  if (jobsOf(w, task).some(isActiveJob)) return;
  // A prune takes restic's exclusive lock: it starts only when no worker uses the repository and no run of this
  // schedule is under way (its BackupJobs would start workers), and backups that come later wait for it.
  const busy = w.repositoryJobs.filter(isActiveJob);
  const running = s.started ?? w.sets.find((set) => !isSettledSet(set.status))?.metadata.name;
  if (task === "prune" && (busy.length > 0 || running)) {
    const why = busy.length > 0 ? `${busy.length} worker Jobs that use repository ${w.schedule.spec.repository.name}` : `BackupSet ${running}`;
    s.condition({
      type: conditionType,
      status: ConditionStatus.False,
      reason: ConditionReason.RepositoryBusy,
      message: `Prune is due; waiting for ${why} to finish.`,
    });
    return;
  }
  const name = boundedName([`walle-${task}`, s.name, slotId(due.slot)]);
  s.actions.push(
    ...workerActions({
      metadata: {
        name,
        namespace: s.repoNs,
        labels: s.labels(WORKER_COMMAND[task]),
        ownerReferences: [ownerRef("BackupSchedule", s.name, w.schedule.metadata.uid ?? "")],
      },
      config,
      command: WORKER_COMMAND[task],
      repositorySecret: w.schedule.spec.repository.name,
      env: task === "prune" ? pruneEnv(w, s.name) : {},
    }),
  );
  s.scheduler(task, due.slot);
  s.status = { ...s.status, [task === "prune" ? "lastPruneRun" : "lastCheckRun"]: rfc3339(s.now) };
  s.condition({
    type: conditionType,
    status: ConditionStatus.False,
    reason: ConditionReason.Running,
    message: `${task === "prune" ? "Prune" : "Check"} Job ${s.repoNs}/${name} started.`,
  });
  s.event(
    "Normal",
    task === "prune" ? EventReason.PruneStarted : EventReason.CheckStarted,
    `Started ${task} Job ${s.repoNs}/${name} on repository ${w.schedule.spec.repository.name}.`,
  );
}

function pruneEnv(w: ScheduleWorld, schedule: string): Record<string, string> {
  const retain = w.schedule.spec.prune?.retain;
  return {
    ...(retain ? { RETENTION: JSON.stringify(retain), BACKUP_SCHEDULE: schedule } : {}),
    ...(w.quietSince ? { STALE_LOCKS_BEFORE: rfc3339(w.quietSince) } : {}),
  };
}

/** Conditions from the newest run of each task, the state they give, and (`bound`) old runs deleted beyond the keep counts. */
function bookkeeping(s: ScheduleStep, bound: boolean): void {
  const { w } = s;
  const spec = w.schedule.spec;
  const sets = newestFirst(w.sets);
  const latest = sets[0];
  if (s.started) {
    s.condition({
      type: BackupScheduleConditionType.BackupReady,
      status: ConditionStatus.False,
      reason: ConditionReason.Running,
      message: `BackupSet ${s.started} is Running.`,
    });
  } else if (latest) {
    const state = latest.status?.state ?? BackupSetState.Running;
    const ok = state === BackupSetState.Finished;
    const reason =
      state === BackupSetState.Finished
        ? ConditionReason.Finished
        : state === BackupSetState.FinishedWithFailures
          ? ConditionReason.FinishedWithFailures
          : ConditionReason.Running;
    s.condition({
      type: BackupScheduleConditionType.BackupReady,
      status: ok ? ConditionStatus.True : ConditionStatus.False,
      reason,
      message: `BackupSet ${latest.metadata.name} is ${state}.`,
    });
  } else if (!findCondition(s.status.conditions, BackupScheduleConditionType.BackupReady)) {
    s.condition({
      type: BackupScheduleConditionType.BackupReady,
      status: ConditionStatus.False,
      reason: ConditionReason.Waiting,
      message: "No BackupSets found for BackupSchedule.",
    });
  }
  const maintenance = (["prune", "check"] as const).map((task) => ({ task, jobs: jobsOf(w, task) }));
  for (const { task, jobs } of maintenance) {
    const [newest] = jobs;
    if (newest) s.condition(jobCondition(task, newest, s.repoNs));
  }
  s.status = { ...s.status, state: stateOf(s.status.conditions ?? []) };
  if (!bound) return;

  /** Of items newest first, those beyond keepSucceeded succeeded ones and keepFailed failed ones. */
  const beyondKeep = <T>(items: readonly T[], ok: (t: T) => boolean, failed: (t: T) => boolean): T[] => {
    let succeeded = 0;
    let failures = 0;
    return items.filter((t) => (ok(t) && ++succeeded > spec.keepSucceeded) || (failed(t) && ++failures > spec.keepFailed));
  };
  for (const set of beyondKeep(
    sets,
    (t) => t.status?.state === BackupSetState.Finished,
    (t) => t.status?.state === BackupSetState.FinishedWithFailures,
  )) {
    const name = set.metadata.name ?? "";
    // Its BackupJobs belong to it: the garbage collector deletes them with it.
    s.actions.push({ op: "delete", target: { apiVersion: API_VERSION, kind: "BackupSet", name } });
    s.event(
      "Normal",
      EventReason.DeletedOldBackupSet,
      `Deleted BackupSet ${name} and its BackupJobs (keepSucceeded ${spec.keepSucceeded}, keepFailed ${spec.keepFailed}).`,
    );
  }
  for (const { task, jobs } of maintenance) {
    for (const job of beyondKeep(
      jobs,
      (j) => jobOutcome(j) === "Complete",
      (j) => jobOutcome(j) === "Failed",
    )) {
      s.actions.push({
        op: "delete",
        target: { apiVersion: "batch/v1", kind: "Job", namespace: job.metadata?.namespace ?? s.repoNs, name: job.metadata?.name ?? "" },
      });
      s.event("Normal", EventReason.DeletedOldJob, `Deleted ${task} Job ${job.metadata?.namespace}/${job.metadata?.name}.`);
    }
  }
}

function jobCondition(task: "prune" | "check", job: Job, ns: string): ConditionInput {
  const type = task === "prune" ? BackupScheduleConditionType.PruneOk : BackupScheduleConditionType.CheckOk;
  const what = `${task === "prune" ? "Prune" : "Check"} Job ${ns}/${job.metadata?.name}`;
  switch (jobOutcome(job)) {
    case "Complete":
      return { type, status: ConditionStatus.True, reason: ConditionReason.Finished, message: `${what} succeeded.` };
    case "Failed":
      return {
        type,
        status: ConditionStatus.False,
        reason: ConditionReason.Failed,
        message: `${what} failed: ${jobFailureMessage(job) ?? "see its pod's termination message"}`,
      };
    default:
      return { type, status: ConditionStatus.False, reason: ConditionReason.Running, message: `${what} is running.` };
  }
}

/** The original's state: a failed check wins, then failures of backups or prunes, then anything running. */
function stateOf(conditions: readonly { type: string; reason: string }[]): BackupScheduleState {
  const reason = (type: string) => conditions.find((c) => c.type === type)?.reason;
  if (reason(BackupScheduleConditionType.CheckOk) === ConditionReason.Failed) return BackupScheduleState.CheckFailed;
  const backup = reason(BackupScheduleConditionType.BackupReady);
  if (backup === ConditionReason.FinishedWithFailures || reason(BackupScheduleConditionType.PruneOk) === ConditionReason.Failed)
    return BackupScheduleState.FinishedWithFailures;
  const running = [BackupScheduleConditionType.BackupReady, BackupScheduleConditionType.CheckOk, BackupScheduleConditionType.PruneOk].some(
    (t) => reason(t) === ConditionReason.Running,
  );
  if (running) return BackupScheduleState.Running;
  if (backup === ConditionReason.Finished) return BackupScheduleState.Finished;
  return BackupScheduleState.Waiting;
}

/** Which repository a schedule's worker Jobs use: its namespace and the value of their ros.io/repository label. */
export function scheduleRepository(s: BackupSchedule, config: WalleConfig): { namespace: string; label: string } {
  return { namespace: s.spec.repository.namespace ?? config.installNamespace, label: repositoryLabel(s.spec.repository.name) };
}

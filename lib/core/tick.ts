// One tick over every schedule, decided from lists alone: one read per kind (schedules, their BackupSets, Walle's
// Jobs; and, only when some backup is due, the pods, PVCs and namespaces its plans need), whatever the number of
// schedules, then one decision per schedule. Writes are O(due).
import { PlanType, type BackupScheduleStatus } from "../api/backup-schedule.ts";
import { ConditionReason } from "../api/conditions.ts";
import { ConditionStatus, CREATED_BY, Label } from "../api/constants.ts";
import { resourceSchemas, type BackupSchedule } from "../api/parse.ts";
import { z } from "zod";
import { BackupScheduleConditionType } from "../api/backup-schedule.ts";
import type { WalleConfig } from "./builders.ts";
import { backupDue, decideSchedule, isActiveJob, pendingBackupRequest, scheduleRepository, settledSchedule, type ManualRun } from "./backup-schedule.ts";
import { rfc3339, setCondition } from "./conditions.ts";
import type { Decision, ReadPlan } from "./decision.ts";
import type { Job, ObjectSummary, Pod, Pvc } from "./objects.ts";
import { addTo, indexInventory, selectPvcs, type NamespaceInfo } from "./plans.ts";

export interface TickObserved {
  readonly schedules?: readonly unknown[];
  readonly sets?: readonly ObjectSummary[];
  readonly jobs?: readonly Job[];
  readonly pods?: readonly Pod[];
  readonly pvcs?: readonly Pvc[];
  readonly namespaces?: readonly NamespaceInfo[];
  /** When the lists were read, by the real clock (not `--now`). */
  readonly readAt?: Date;
}

/**
 * What one tick does: everything (a schedule's pending ros.io/backup-requested run included), one schedule now (a
 * run asked for by an event), or only the pending requested runs (the reconcile function, on a schedule's event).
 */
export interface TickScope {
  readonly schedule?: string;
  readonly manual?: ManualRun;
  /** Only each schedule's pending ros.io/backup-requested run: no clock, no prune or check, no history. */
  readonly requested?: boolean;
  /**
   * Only the status the schedule's runs give it (its BackupSet has just ended, so its state need not wait for
   * the next tick): no clock, no run, no prune or check, no history.
   */
  readonly settled?: boolean;
}

/** The run a schedule makes now whatever the clock says: the event's, else the one its annotation asks for. */
const manualRun = (s: BackupSchedule, scope: TickScope): ManualRun | undefined => scope.manual ?? pendingBackupRequest(s);

/** Each list is parsed once, though both the reads and the plan ask for it. */
const parsedLists = new WeakMap<readonly unknown[], ReturnType<typeof resourceSchemas.BackupSchedule.safeParse>[]>();
function parseSchedules(raw: readonly unknown[] | undefined) {
  if (!raw) return [];
  let parsed = parsedLists.get(raw);
  if (!parsed) {
    parsed = raw.map((r) => resourceSchemas.BackupSchedule.safeParse(r));
    parsedLists.set(raw, parsed);
  }
  return parsed;
}

function inScope(s: BackupSchedule, scope: TickScope): boolean {
  return scope.schedule === undefined || s.metadata.name === scope.schedule;
}

/** The reads of a tick, in two rounds: what every tick needs, then what the due plans need. */
export function tickReads(seen: Partial<TickObserved>, now: Date, scope: TickScope = {}): ReadPlan<TickObserved> {
  if (seen.schedules === undefined) {
    return {
      schedules: { list: "BackupSchedule", unparsed: true },
      sets: { list: "BackupSet", labelSelector: Label.BackupSchedule, summary: true },
      jobs: { list: "Job", labelSelector: `${Label.CreatedBy}=${CREATED_BY},${Label.BackupJobType}` },
    };
  }
  const due = parseSchedules(seen.schedules)
    .flatMap((p) => (p.success ? [p.data] : []))
    .filter((s) => !scope.settled && inScope(s, scope) && (manualRun(s, scope) !== undefined || (!scope.requested && backupDue(s, now))));
  const plans = due.flatMap((s) => s.spec.plans);
  if (plans.length === 0 || seen.pvcs !== undefined) return {};
  return {
    pvcs: { list: "PersistentVolumeClaim" },
    ...(plans.some((p) => p.type === PlanType.Pod) ? { pods: { list: "Pod" } } : {}),
    ...(plans.some((p) => p.namespaceSelector) ? { namespaces: { list: "Namespace", summary: true } } : {}),
  };
}

export interface SchedulePlan {
  readonly name: string;
  readonly uid?: string;
  readonly resourceVersion?: string;
  readonly before: BackupScheduleStatus;
  readonly decision: Decision<BackupScheduleStatus>;
}

/** One decision per schedule in scope, from what the tick read. */
export function planTick(w: TickObserved, config: WalleConfig, now: Date, scope: TickScope = {}): SchedulePlan[] {
  const sets = groupBy(w.sets ?? [], (s) => s.metadata.labels?.[Label.BackupSchedule]);
  const jobs = w.jobs ?? [];
  const bySchedule = groupBy(jobs, (j) => j.metadata?.labels?.[Label.BackupSchedule]);
  const byRepository = groupBy(jobs, (j) => `${j.metadata?.namespace ?? ""}/${j.metadata?.labels?.[Label.Repository] ?? ""}`);
  // No worker of the cluster running at all: the only moment a lock of this cluster's workers is known to be stale.
  const quietSince = w.readAt && !jobs.some(isActiveJob) ? w.readAt : undefined;
  const inventory = w.pvcs
    ? indexInventory({ pvcs: w.pvcs, ...(w.pods ? { pods: w.pods } : {}), ...(w.namespaces ? { namespaces: w.namespaces } : {}) })
    : undefined;
  const plans: SchedulePlan[] = [];
  for (const [index, parsed] of parseSchedules(w.schedules).entries()) {
    if (!parsed.success) {
      const invalid = invalidSchedule(w.schedules?.[index], parsed.error.issues, now);
      if (invalid && (scope.schedule === undefined || invalid.name === scope.schedule) && !scope.settled && (!scope.requested || invalid.answers))
        plans.push(invalid);
      continue;
    }
    const schedule = parsed.data;
    if (!inScope(schedule, scope) || schedule.metadata.deletionTimestamp) continue;
    const name = schedule.metadata.name ?? "";
    const sameSchedule = {
      name,
      ...(schedule.metadata.uid ? { uid: schedule.metadata.uid } : {}),
      ...(schedule.metadata.resourceVersion ? { resourceVersion: schedule.metadata.resourceVersion } : {}),
      before: schedule.status ?? {},
    };
    if (scope.settled) {
      plans.push({
        ...sameSchedule,
        decision: settledSchedule({ schedule, sets: sets.get(name) ?? [], jobs: bySchedule.get(name) ?? [], repositoryJobs: [] }, config, now),
      });
      continue;
    }
    const manual = manualRun(schedule, scope);
    if (scope.requested && !manual) continue;
    const repo = scheduleRepository(schedule, config);
    const due = manual !== undefined || backupDue(schedule, now);
    const decision = decideSchedule(
      {
        schedule,
        sets: sets.get(name) ?? [],
        jobs: bySchedule.get(name) ?? [],
        repositoryJobs: byRepository.get(`${repo.namespace}/${repo.label}`) ?? [],
        ...(due && inventory ? { selection: selectPvcs(schedule.spec.plans, inventory) } : {}),
        ...(quietSince ? { quietSince } : {}),
      },
      config,
      now,
      manual,
    );
    plans.push({ ...sameSchedule, decision });
  }
  return plans;
}

/**
 * A schedule the API server accepted and Walle cannot read: BackupReady False, naming each field; nothing runs. A
 * run its annotation asks for is answered with the same words (`answers`), so whoever asked is not left waiting.
 */
function invalidSchedule(
  raw: unknown,
  issues: readonly { path: readonly PropertyKey[]; message: string }[],
  now: Date,
): (SchedulePlan & { answers: boolean }) | undefined {
  const meta = (raw as { metadata?: { name?: string; uid?: string; resourceVersion?: string; annotations?: unknown } } | undefined)?.metadata;
  if (!meta?.name) return undefined;
  const status = resourceSchemas.BackupSchedule.shape.status.safeParse((raw as { status?: unknown }).status).data ?? {};
  const message = `The BackupSchedule is invalid: ${issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`;
  const conditions = setCondition(
    status.conditions,
    { type: BackupScheduleConditionType.BackupReady, status: ConditionStatus.False, reason: ConditionReason.InvalidSpec, message },
    now,
  );
  const annotations = z.record(z.string(), z.string()).safeParse(meta.annotations).data;
  const asked = pendingBackupRequest({ metadata: { ...(annotations ? { annotations } : {}) }, status });
  return {
    name: meta.name,
    ...(meta.uid ? { uid: meta.uid } : {}),
    ...(meta.resourceVersion ? { resourceVersion: meta.resourceVersion } : {}),
    before: status,
    decision: {
      actions: [],
      status: {
        ...status,
        conditions,
        ...(asked ? { lastBackupRequest: { id: asked.requestId, time: rfc3339(now), message: `No backup started: ${message}` } } : {}),
      },
      events: [],
    },
    answers: asked !== undefined,
  };
}

function groupBy<T>(items: readonly T[], key: (t: T) => string | undefined): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    if (k !== undefined) addTo(out, k, item);
  }
  return out;
}

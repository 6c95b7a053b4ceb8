// The tick: every schedule evaluated at `now` (lib/core/tick.ts decides), each decision carried out by the one
// executor, then the resync that lost events make necessary. A dry run reads the same, decides the same, and
// reports what it would do instead of doing it.
import type { Action } from "../core/decision.ts";
import { planResync, resyncReads } from "../core/sweep.ts";
import { planTick, tickReads, type TickScope } from "../core/tick.ts";
import { apply, observe, type ExecutorContext } from "../k8s/executor.ts";
import { errorText, resync, type ResyncReport } from "./resync.ts";

export interface TickOptions extends TickScope {
  readonly dryRun?: boolean;
  /**
   * The time the schedules are read at (`--now`). In-flight work is always judged by the real clock, so a tick
   * run at another time never fails a healthy backup for a deadline that has not passed.
   */
  readonly at?: Date;
  /** false: evaluate the schedules only, and leave in-flight work to the next tick (`--no-resync`). */
  readonly resync?: boolean;
}

export interface TickReport {
  readonly now: string;
  readonly dryRun: boolean;
  /** Schedules looked at. */
  readonly schedules: number;
  /** What the tick made or deleted, one line each (`create BackupSet nightly-20261202t020000z`). */
  readonly actions: readonly string[];
  /** Schedules whose decision could not be carried out, with the error; the next tick tries again. */
  readonly errors: readonly string[];
  readonly resync?: ResyncReport | { readonly wouldDrive: number; readonly wouldDelete: number };
}

export function describeAction(a: Action): string {
  if (a.op === "create") {
    const m = a.manifest;
    return `create ${m.kind} ${m.metadata.namespace ? `${m.metadata.namespace}/` : ""}${m.metadata.name}`;
  }
  return `${a.op} ${a.target.kind} ${a.target.namespace ? `${a.target.namespace}/` : ""}${a.target.name}`;
}

export async function tick(ctx: ExecutorContext, opts: TickOptions = {}): Promise<TickReport> {
  const now = opts.at ?? ctx.now();
  const scope: TickScope = {
    ...(opts.schedule ? { schedule: opts.schedule } : {}),
    ...(opts.manual ? { manual: opts.manual } : {}),
    ...(opts.requested ? { requested: true } : {}),
    ...(opts.settled ? { settled: true } : {}),
  };
  // A run someone asked for, or a schedule's status after its run, answers for itself: the caller retries (an API
  // failure becomes a 503).
  const asked = opts.manual !== undefined || opts.requested === true || opts.settled === true;
  const readAt = ctx.now();
  const observed = await observe(ctx.api, (seen) => tickReads(seen, now, scope));
  const plans = planTick({ ...observed, readAt }, ctx.config, now, scope);
  const actions: string[] = [];
  const errors: string[] = [];
  for (const p of plans) {
    const all = [...p.decision.actions, ...(p.decision.then?.actions ?? [])];
    if (opts.dryRun) {
      actions.push(...all.map(describeAction));
      for (const e of p.decision.events) ctx.log.debug({ schedule: p.name, reason: e.reason }, `Would record: ${e.note}`);
      continue;
    }
    try {
      const target = {
        kind: "BackupSchedule",
        name: p.name,
        ...(p.uid ? { uid: p.uid } : {}),
        ...(p.resourceVersion ? { resourceVersion: p.resourceVersion } : {}),
      } as const;
      await apply(ctx, target, p.before, p.decision);
      actions.push(...all.map(describeAction));
    } catch (err) {
      if (asked) throw err;
      // One schedule failing does not hold up the others; its deterministic names make the retry safe.
      errors.push(`BackupSchedule ${p.name}: ${errorText(err)}`);
    }
  }
  // A run asked for is about its schedule; the in-flight work of the cluster is the clock's business.
  let resynced: TickReport["resync"];
  if (!asked && opts.resync !== false) {
    if (opts.dryRun) {
      const plan = planResync(await observe(ctx.api, resyncReads));
      resynced = { wouldDrive: plan.backupJobs.length + plan.backupRestores.length + plan.backupSets.length, wouldDelete: plan.sweep.length };
    } else {
      resynced = await resync(ctx);
      errors.push(...resynced.errors);
    }
  }
  return { now: now.toISOString(), dryRun: opts.dryRun === true, schedules: plans.length, actions, errors, ...(resynced ? { resync: resynced } : {}) };
}

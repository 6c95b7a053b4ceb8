// Resync: ApiServerSource loses events (docs/architecture.md, Events), so this lists all in-flight work and drives each item one
// step, and deletes what runs left behind once they are gone or settled. The core decides which is which
// (lib/core/sweep.ts); the executor reads and deletes.
import { backupJobReconciler } from "../core/backup-job.ts";
import { backupRestoreReconciler } from "../core/backup-restore.ts";
import { backupSetReconciler } from "../core/backup-set.ts";
import { planResync, resyncReads } from "../core/sweep.ts";
import { performAll } from "../k8s/actions.ts";
import { observe, step, type ExecutorContext } from "../k8s/executor.ts";
import { isConflict } from "../k8s/rest.ts";

export interface ResyncReport {
  backupJobs: number;
  backupRestores: number;
  backupSets: number;
  orphansDeleted: number;
  errors: string[];
}

/** An error for a report: its message and, for the executor's wrapped errors, the API server's answer. */
export function errorText(err: unknown): string {
  return `${String(err)}${err instanceof Error && err.cause ? ` (${String(err.cause)})` : ""}`;
}

export async function resync(ctx: ExecutorContext): Promise<ResyncReport> {
  const plan = planResync(await observe(ctx.api, resyncReads));
  const report: ResyncReport = { backupJobs: 0, backupRestores: 0, backupSets: 0, orphansDeleted: 0, errors: [] };
  // One item failing does not stop the others: each error is reported, and the next resync tries again.
  const each = async (what: string, work: () => Promise<unknown>, count: () => void) => {
    try {
      await work();
      count();
    } catch (err) {
      // A conflict means another instance (the reconcile function, fed by the same change) took this step.
      if (isConflict(err)) count();
      else report.errors.push(`${what}: ${errorText(err)}`);
    }
  };
  for (const r of plan.backupRestores) {
    await each(
      `BackupRestore ${r.namespace}/${r.name}`,
      () => step(ctx, backupRestoreReconciler, r.name, r.namespace),
      () => report.backupRestores++,
    );
  }
  for (const j of plan.backupJobs) {
    await each(
      `BackupJob ${j.namespace}/${j.name}`,
      () => step(ctx, backupJobReconciler, j.name, j.namespace),
      () => report.backupJobs++,
    );
  }
  for (const name of plan.backupSets) {
    await each(
      `BackupSet ${name}`,
      () => step(ctx, backupSetReconciler, name),
      () => report.backupSets++,
    );
  }
  await performAll(ctx.api, plan.sweep);
  report.orphansDeleted = plan.sweep.length;
  return report;
}

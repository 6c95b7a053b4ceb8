// A BackupSet's status, aggregated from its BackupJobs with the original Walle's semantics: jobs counted by
// phase; once every job has finished or failed (and there is at least one, and as many as its run said it makes),
// the set is Finished, or FinishedWithFailures when any failed, with its finish time and one Event.
import { BackupJobPhase } from "../api/backup-job.ts";
import { BackupSetState, type BackupSetStatistics, type BackupSetStatus } from "../api/backup-set.ts";
import { EventReason } from "../api/conditions.ts";
import { WalleAnnotation } from "../api/constants.ts";
import type { BackupJob, BackupSet } from "../api/parse.ts";
import { rfc3339 } from "./conditions.ts";
import { unchanged, type KubeEvent, type Reconciler } from "./decision.ts";
import { selectorString } from "./selectors.ts";

export function statistics(phases: readonly (string | undefined)[]): BackupSetStatistics {
  const s = { totalJobs: phases.length, runningJobs: 0, finishedJobs: 0, failedJobs: 0, unstartedJobs: 0 };
  for (const phase of phases) {
    switch (phase) {
      case BackupJobPhase.CreatingSnapshot:
      case BackupJobPhase.WaitingBackup:
      case BackupJobPhase.BackingUp:
        s.runningJobs++;
        break;
      case BackupJobPhase.Finished:
        s.finishedJobs++;
        break;
      case BackupJobPhase.Failed:
        s.failedJobs++;
        break;
      default:
        s.unstartedJobs++;
    }
  }
  return s;
}

/** The BackupJobs the run said it makes (annotation ros.io/backup-jobs); undefined when it did not say. */
export function expectedJobs(set: { readonly metadata: { readonly annotations?: Readonly<Record<string, string>> } }): number | undefined {
  const raw = set.metadata.annotations?.[WalleAnnotation.BackupJobs];
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : undefined;
}

export function decideBackupSet(
  status: BackupSetStatus | undefined,
  jobPhases: readonly (string | undefined)[],
  now: Date,
  generation?: number,
  expected?: number,
): { status: BackupSetStatus; events: KubeEvent[] } {
  const before = status ?? {};
  // A finished set stays as it finished, as in the original: later changes to its jobs do not reopen it.
  if (before.state === BackupSetState.Finished || before.state === BackupSetState.FinishedWithFailures) return { status: before, events: [] };
  // BackupJobs the run has yet to make count as not started, so the set cannot finish without them.
  const missing = Math.max(0, (expected ?? 0) - jobPhases.length);
  const stats = statistics([...jobPhases, ...Array<undefined>(missing).fill(undefined)]);
  const next: BackupSetStatus = {
    ...before,
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    state: BackupSetState.Running,
    statistics: stats,
    completions: `${stats.finishedJobs}/${stats.totalJobs}`,
  };
  const settled = stats.finishedJobs + stats.failedJobs > 0 && stats.runningJobs === 0 && stats.unstartedJobs === 0;
  if (!settled) return { status: next, events: [] };
  const failed = stats.failedJobs > 0;
  return {
    status: { ...next, state: failed ? BackupSetState.FinishedWithFailures : BackupSetState.Finished, finishTime: rfc3339(now) },
    events: [
      failed
        ? {
            type: "Warning",
            reason: EventReason.FinishedWithFailures,
            note: `Backups finished with ${stats.failedJobs} of ${stats.totalJobs} BackupJobs failed.`,
          }
        : { type: "Normal", reason: EventReason.FinishedBackups, note: `All ${stats.totalJobs} backups finished.` },
    ],
  };
}

/** A set that has finished, with or without failures: the original never reopens one. */
export const isSettledSet = (status: { readonly state?: string } | undefined): boolean =>
  status?.state === BackupSetState.Finished || status?.state === BackupSetState.FinishedWithFailures;

export interface BackupSetWorld {
  readonly set: BackupSet;
  /** Its BackupJobs; not read once the set has finished. */
  readonly jobs?: readonly BackupJob[];
}

/** One LIST of the set's BackupJobs, and one status write when the aggregate changed. */
export const backupSetReconciler: Reconciler<BackupSet, { jobs?: readonly BackupJob[] }, BackupSetWorld, BackupSetStatus> = {
  kind: "BackupSet",
  reads: (set, seen) => (isSettledSet(set.status) || seen.jobs ? {} : { jobs: { list: "BackupJob", labelSelector: selectorString(set.spec.selector) } }),
  world: (set, seen) => ({ set, ...seen }),
  decide(w, _config, now) {
    if (!w.jobs) return unchanged(w.set.status ?? {});
    const d = decideBackupSet(
      w.set.status,
      w.jobs.map((j) => j.status?.phase),
      now,
      w.set.metadata.generation,
      expectedJobs(w.set),
    );
    return { actions: [], ...d };
  },
  // A set's spec is only its selector, which Walle wrote: there is nothing to fail, only nothing to count.
  invalid: (status) => unchanged(status),
};

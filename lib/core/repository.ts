// Turns at a repository, decided from the cluster: which BackupJobs are waiting for one (lib/core/backup-job.ts
// makes them wait while a prune holds the repository or too many workers use it), and which changes can end a
// wait.
import { BackupJobConditionType, BackupJobPhase } from "../api/backup-job.ts";
import { ConditionReason } from "../api/conditions.ts";
import { JobType, Label } from "../api/constants.ts";
import { findCondition } from "./conditions.ts";
import { jobOutcome, type ObjectSummary } from "./objects.ts";
import type { EventObject } from "./routing.ts";

/** BackupJobs waiting for a turn, oldest first, at most `limit` of them (more could not start at once anyway). */
export function planWake(jobs: readonly ObjectSummary[], limit: number): { namespace: string; name: string }[] {
  return jobs
    .filter(
      (j) =>
        j.status?.phase === BackupJobPhase.CreatingSnapshot &&
        findCondition(j.status.conditions, BackupJobConditionType.BackupState)?.reason === ConditionReason.RepositoryBusy,
    )
    .sort((a, b) => (a.metadata.creationTimestamp ?? "").localeCompare(b.metadata.creationTimestamp ?? ""))
    .slice(0, limit)
    .map((j) => ({ namespace: j.metadata.namespace ?? "", name: j.metadata.name ?? "" }));
}

/** A schedule's prune or check Job that has just ended: the repository it held is free again. */
export function endsMaintenance(obj: EventObject): boolean {
  const type = obj.metadata.labels?.[Label.BackupJobType];
  if (obj.kind !== "Job" || (type !== JobType.Prune && type !== JobType.Check)) return false;
  return jobOutcome(obj) !== undefined;
}

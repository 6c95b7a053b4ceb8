// What `kubectl walle status` shows, decided from lists alone: each schedule with its state and its last and next
// runs, the BackupSets still running with their completions, and the BackupJobs that failed with their messages.
import { BackupJobConditionType, BackupJobPhase } from "../api/backup-job.ts";
import { BackupScheduleConditionType } from "../api/backup-schedule.ts";
import { BackupSetState } from "../api/backup-set.ts";
import { findCondition } from "./conditions.ts";

interface Meta {
  readonly name?: string;
  readonly namespace?: string;
  readonly creationTimestamp?: string;
  readonly labels?: Readonly<Record<string, string>>;
}
interface Condition {
  readonly type: string;
  readonly status: string;
  readonly reason?: string;
  readonly message?: string;
}

export interface ScheduleSeen {
  readonly metadata: Meta;
  readonly spec?: {
    readonly suspend?: boolean;
    readonly interval?: string;
    readonly schedule?: string;
    readonly repository?: { readonly name?: string; readonly namespace?: string };
  };
  readonly status?: { readonly state?: string; readonly lastBackupRun?: string; readonly nextBackupRun?: string; readonly conditions?: readonly Condition[] };
}
export interface SetSeen {
  readonly metadata: Meta;
  readonly status?: { readonly state?: string; readonly completions?: string };
}
export interface JobSeen {
  readonly metadata: Meta;
  readonly spec?: { readonly sourcePvc?: string };
  readonly status?: { readonly phase?: string; readonly finishTime?: string; readonly conditions?: readonly Condition[] };
}

export interface ScheduleRow {
  readonly name: string;
  readonly state: string;
  readonly every: string;
  readonly lastBackupRun?: string;
  readonly nextBackupRun?: string;
  /** Why the schedule is not ready, from BackupReady when it is False for a reason other than a running backup. */
  readonly problem?: string;
}
export interface SetRow {
  readonly name: string;
  readonly schedule: string;
  readonly completions: string;
  readonly created?: string;
}
export interface JobRow {
  readonly namespace: string;
  readonly name: string;
  readonly pvc: string;
  readonly reason: string;
  readonly message: string;
  readonly finished?: string;
}

export interface Overview {
  readonly schedules: readonly ScheduleRow[];
  readonly runningSets: readonly SetRow[];
  readonly failedJobs: readonly JobRow[];
}

const byName = <T extends { readonly name: string }>(a: T, b: T) => a.name.localeCompare(b.name);

export function overview(lists: { schedules: readonly ScheduleSeen[]; sets: readonly SetSeen[]; jobs: readonly JobSeen[] }): Overview {
  const schedules = lists.schedules.map((s): ScheduleRow => {
    const ready = findCondition(s.status?.conditions, BackupScheduleConditionType.BackupReady);
    const problem =
      ready && ready.reason !== "Running" && ready.reason !== "Finished" && ready.reason !== "Waiting" && ready.reason !== "FinishedWithFailures"
        ? `${ready.reason}: ${ready.message ?? ""}`
        : undefined;
    return {
      name: s.metadata.name ?? "",
      state: s.spec?.suspend ? "Suspended" : (s.status?.state ?? "Waiting"),
      every: s.spec?.interval ?? s.spec?.schedule ?? "",
      ...(s.status?.lastBackupRun ? { lastBackupRun: s.status.lastBackupRun } : {}),
      ...(s.status?.nextBackupRun && !s.spec?.suspend ? { nextBackupRun: s.status.nextBackupRun } : {}),
      ...(problem ? { problem } : {}),
    };
  });
  const runningSets = lists.sets
    .filter((s) => s.status?.state !== BackupSetState.Finished && s.status?.state !== BackupSetState.FinishedWithFailures)
    .map((s): SetRow => ({
      name: s.metadata.name ?? "",
      schedule: s.metadata.labels?.["ros.io/backup-schedule"] ?? "",
      completions: s.status?.completions ?? "",
      ...(s.metadata.creationTimestamp ? { created: s.metadata.creationTimestamp } : {}),
    }));
  const failedJobs = lists.jobs
    .filter((j) => j.status?.phase === BackupJobPhase.Failed)
    .map((j): JobRow => {
      const state = findCondition(j.status?.conditions, BackupJobConditionType.BackupState);
      return {
        namespace: j.metadata.namespace ?? "",
        name: j.metadata.name ?? "",
        pvc: j.spec?.sourcePvc ?? "",
        reason: state?.reason ?? "Failed",
        message: state?.message ?? "",
        ...(j.status?.finishTime ? { finished: j.status.finishTime } : {}),
      };
    })
    // Newest failure first: what broke last is what the admin looks for.
    .sort((a, b) => (b.finished ?? "").localeCompare(a.finished ?? "") || byName(a, b));
  return { schedules: schedules.sort(byName), runningSets: runningSets.sort(byName), failedJobs };
}

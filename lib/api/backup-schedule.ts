import { z } from "zod";
import {
  conditionsSchema,
  cronSchema,
  intervalSchema,
  keepWithinSchema,
  labelSelectorSchema,
  nonNegativeCount,
  observedGenerationSchema,
  repositoryRefSchema,
  timeSchema,
  timeZoneSchema,
  workerSecurityContextSchema,
} from "./common.ts";
import { ConditionType } from "./conditions.ts";
import type { ValueOf } from "./constants.ts";
import { ageColumn } from "./kind.ts";
import type { KindDefinition } from "./kind.ts";
import { withRules } from "./rules.ts";
import { backupCommandDescription, backupCommandRule } from "./backup-job.ts";

/** Kinds of workload a plan selects. The original only implemented `pod`. */
export const PlanType = {
  Pod: "pod",
  /** (new) Select PVCs directly, whether or not a pod mounts them. */
  PersistentVolumeClaim: "persistentVolumeClaim",
} as const;
export type PlanType = ValueOf<typeof PlanType>;

export const FieldOperator = {
  Equals: "equals",
  DoesNotEqual: "doesNotEqual",
} as const;
export type FieldOperator = ValueOf<typeof FieldOperator>;

export const BackupScheduleState = {
  Waiting: "Waiting",
  Running: "Running",
  Finished: "Finished",
  FinishedWithFailures: "FinishedWithFailures",
  CheckFailed: "CheckFailed",
} as const;
export type BackupScheduleState = ValueOf<typeof BackupScheduleState>;

export const BackupScheduleConditionType = {
  BackupReady: ConditionType.BackupReady,
  CheckOk: ConditionType.CheckOk,
  PruneOk: ConditionType.PruneOk,
} as const;
export type BackupScheduleConditionType = ValueOf<typeof BackupScheduleConditionType>;

/** The original's defaults: BackupSets kept per outcome. */
export const DEFAULT_KEEP_SUCCEEDED = 1;
export const DEFAULT_KEEP_FAILED = 3;

const fieldSelectorSchema = z.object({
  field: z.string().min(1).max(256).describe("A field path of the selected object, e.g. metadata.namespace."),
  operator: z.enum(FieldOperator).describe("equals or doesNotEqual."),
  value: z.string().max(256).describe("The value to compare with."),
});

const commandSchema = z.string().max(4096);

export const backupPlanSchema = withRules(
  z.object({
    type: z.enum(PlanType).describe("What the plan selects: pod (the PVCs its pods mount) or persistentVolumeClaim (PVCs themselves)."),
    labelSelector: labelSelectorSchema.optional().describe("Selects objects of the plan's type by label."),
    fieldSelector: z.array(fieldSelectorSchema).max(16).optional().describe("Selects objects of the plan's type by field; all entries must hold."),
    namespaceSelector: labelSelectorSchema.optional().describe("(new) Selects the namespaces to look in by their labels. Omitted: all namespaces."),
    beforeSnapshot: commandSchema.optional().describe("A command run in the pod that mounts the PVC before its snapshot is taken."),
    afterSnapshot: commandSchema.optional().describe("A command run in the pod that mounts the PVC after its snapshot is taken."),
    backupCommand: commandSchema.optional().describe(backupCommandDescription),
    workerSecurityContext: workerSecurityContextSchema
      .optional()
      .describe("(new) Run the workers of this plan's PVCs unprivileged as this user. Default: the schedule's workerSecurityContext."),
  }),
  backupCommandRule,
);
export type BackupPlan = z.output<typeof backupPlanSchema>;

const RETENTION_KEYS = ["last", "hourly", "daily", "weekly", "monthly", "yearly", "within"] as const;

export const retentionSchema = withRules(
  z.object({
    last: nonNegativeCount.optional().describe("(new) Keep the last n snapshots (restic --keep-last)."),
    hourly: nonNegativeCount.optional().describe("Keep the last snapshot of each of the last n hours."),
    daily: nonNegativeCount.optional().describe("Keep the last snapshot of each of the last n days."),
    weekly: nonNegativeCount.optional().describe("Keep the last snapshot of each of the last n weeks."),
    monthly: nonNegativeCount.optional().describe("Keep the last snapshot of each of the last n months."),
    yearly: nonNegativeCount.optional().describe("Keep the last snapshot of each of the last n years."),
    within: keepWithinSchema.optional().describe("(new) Keep every snapshot taken within this long of the newest, e.g. 14d (restic --keep-within)."),
  }),
  {
    // restic's forget with no policy removes nothing, so a pruning schedule without one would only ever look busy.
    cel: `${RETENTION_KEYS.map((key) => `has(self.${key})`).join(" || ")}`,
    message: `retain must set at least one of ${RETENTION_KEYS.join(", ")}`,
    holds: (retain) => RETENTION_KEYS.some((key) => retain[key] !== undefined),
  },
);
export type Retention = z.output<typeof retentionSchema>;

export const backupScheduleSpecSchema = withRules(
  z.object({
    repository: repositoryRefSchema,
    interval: intervalSchema.optional().describe("Run a backup this long after the last one started, e.g. 6h or 1h30m."),
    schedule: cronSchema.optional().describe("(new) Run backups on a cron schedule (5 fields or a macro such as @daily) instead of an interval."),
    timezone: timeZoneSchema.optional().describe("(new) The IANA time zone the schedule is read in. Default: UTC."),
    suspend: z.boolean().default(false).describe("(new) When true, no new backups, prunes or checks start."),
    keepSucceeded: nonNegativeCount.default(DEFAULT_KEEP_SUCCEEDED).describe("How many successful BackupSets to keep."),
    keepFailed: nonNegativeCount.default(DEFAULT_KEEP_FAILED).describe("How many failed BackupSets to keep."),
    plans: z.array(backupPlanSchema).min(1).max(32).describe("What to back up. The first plan that matches a PVC wins; later plans do not apply to it."),
    prune: z
      .object({
        interval: intervalSchema.describe("How often to prune."),
        retain: retentionSchema.describe("Which snapshots to keep; the rest are forgotten and pruned."),
      })
      .optional()
      .describe("Forget and prune old snapshots in the repository."),
    check: z
      .object({ interval: intervalSchema.describe("How often to check.") })
      .optional()
      .describe("Check the repository's integrity (restic check)."),
    workerSecurityContext: workerSecurityContextSchema
      .optional()
      .describe("(new) Run the backup workers unprivileged as this user (a plan may give its own). Prune and check always run unprivileged."),
  }),
  {
    cel: "has(self.interval) != has(self.schedule)",
    message: "exactly one of interval and schedule must be set",
    holds: (spec) => (spec.interval === undefined) !== (spec.schedule === undefined),
  },
  {
    cel: "!has(self.timezone) || has(self.schedule)",
    message: "timezone may only be set together with schedule",
    fieldPath: ".timezone",
    holds: (spec) => spec.timezone === undefined || spec.schedule !== undefined,
  },
);
export type BackupScheduleSpec = z.output<typeof backupScheduleSpecSchema>;

export const backupScheduleStatusSchema = z.object({
  observedGeneration: observedGenerationSchema.optional(),
  state: z.enum(BackupScheduleState).optional().describe("The state of the schedule's latest work."),
  lastBackupRun: timeSchema.optional().describe("When the last backup started."),
  lastCheckRun: timeSchema.optional().describe("When the last check started."),
  lastPruneRun: timeSchema.optional().describe("When the last prune started."),
  nextBackupRun: timeSchema.optional().describe("(new) When the next backup is due."),
  conditions: conditionsSchema.optional(),
  lastBackupRequest: z
    .object({
      id: z.string().describe("The value of the ros.io/backup-requested annotation this answers."),
      time: timeSchema.describe("When Walle handled it."),
      backupSet: z.string().optional().describe("The BackupSet of the run it started, when it started one."),
      message: z.string().describe("What came of it."),
    })
    .optional()
    .describe(
      "(new) The last run asked for by the ros.io/backup-requested annotation (kubectl walle backup --schedule); a new value of it runs the schedule once, even while suspended.",
    ),
  scheduler: z
    .object({
      backupTimestamp: timeSchema.optional(),
      checkTimestamp: timeSchema.optional(),
      pruneTimestamp: timeSchema.optional(),
    })
    .optional()
    .describe("When the scheduler last considered each task. Unlike the last*Run times these move on when a run is skipped."),
});
export type BackupScheduleStatus = z.output<typeof backupScheduleStatusSchema>;

export const backupScheduleKind: KindDefinition = {
  kind: "BackupSchedule",
  plural: "backupschedules",
  singular: "backupschedule",
  shortNames: ["backup-schedule"],
  scope: "Cluster",
  description:
    "What to back up (plans of label and field selectors), when (an interval or a cron schedule) and where to " +
    "(a restic repository Secret). It may also prune and check the repository.",
  spec: backupScheduleSpecSchema,
  status: backupScheduleStatusSchema,
  printerColumns: [
    { name: "Status", type: "string", jsonPath: ".status.state", description: "State of the latest work." },
    { name: "Suspend", type: "boolean", jsonPath: ".spec.suspend", description: "Whether new runs are held back." },
    { name: "LastBackup", type: "date", jsonPath: ".status.lastBackupRun", description: "When the last backup started." },
    { name: "NextBackup", type: "date", jsonPath: ".status.nextBackupRun", description: "When the next backup is due." },
    { name: "Interval", type: "string", jsonPath: ".spec.interval", description: "Backup interval.", priority: 1 },
    { name: "Schedule", type: "string", jsonPath: ".spec.schedule", description: "Backup cron schedule.", priority: 1 },
    ageColumn,
  ],
};

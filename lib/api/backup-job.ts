import { z } from "zod";
import {
  conditionsSchema,
  objectName,
  observedGenerationSchema,
  progressSchema,
  repositoryRefSchema,
  timeSchema,
  workerSecurityContextSchema,
} from "./common.ts";
import { ConditionType } from "./conditions.ts";
import type { ValueOf } from "./constants.ts";
import { ageColumn, progressColumn, repositoryColumn } from "./kind.ts";
import type { KindDefinition } from "./kind.ts";
import { immutable, withRules } from "./rules.ts";

export const BackupJobPhase = {
  NotStarted: "NotStarted",
  CreatingSnapshot: "CreatingSnapshot",
  WaitingBackup: "WaitingBackup",
  BackingUp: "BackingUp",
  Finished: "Finished",
  Failed: "Failed",
} as const;
export type BackupJobPhase = ValueOf<typeof BackupJobPhase>;

export const BackupJobConditionType = {
  SnapshotReady: ConditionType.SnapshotReady,
  BackupState: ConditionType.BackupState,
  FullFidelity: ConditionType.FullFidelity,
  CleanedUp: ConditionType.CleanedUp,
  Hooks: ConditionType.Hooks,
} as const;
export type BackupJobConditionType = ValueOf<typeof BackupJobConditionType>;

const commandSchema = z.string().max(4096);

/** The rule that a backup of a command's output has no snapshot hooks: there is no snapshot for them to surround. */
export const backupCommandRule = {
  cel: "!has(self.backupCommand) || (!has(self.beforeSnapshot) && !has(self.afterSnapshot))",
  message: "backupCommand backs up a command's output instead of a snapshot: beforeSnapshot and afterSnapshot have no snapshot to surround",
  holds: (spec: { backupCommand?: string | undefined; beforeSnapshot?: string | undefined; afterSnapshot?: string | undefined }) =>
    spec.backupCommand === undefined || (spec.beforeSnapshot === undefined && spec.afterSnapshot === undefined),
};

export const backupCommandDescription =
  "(new) Back up what this command writes to stdout (a database dump, say) instead of a snapshot of the volume: run by /bin/sh -c " +
  "in the first container that mounts the PVC, of the first running pod that mounts it, and streamed into restic backup --stdin " +
  "as the file <pvc>.<container>.stdout. The pods' ros.io/backup-command annotation does the same when this is not set.";

export const backupJobSpecSchema = immutable(
  withRules(
    z.object({
      sourcePvc: objectName("sourcePvc").describe("The PVC to back up, in the BackupJob's namespace."),
      repository: repositoryRefSchema,
      beforeSnapshot: commandSchema.optional().describe("A command run in the pod that mounts the PVC before its snapshot is taken."),
      afterSnapshot: commandSchema.optional().describe("A command run in the pod that mounts the PVC after its snapshot is taken."),
      backupCommand: commandSchema.optional().describe(backupCommandDescription),
      workerSecurityContext: workerSecurityContextSchema.optional(),
    }),
    backupCommandRule,
  ),
  // A BackupJob is one run; letting its PVC or repository change under a running worker would back up one
  // thing and report another.
  "spec is immutable: create a new BackupJob to back up something else",
);
export type BackupJobSpec = z.output<typeof backupJobSpecSchema>;

const byteCount = z.int().min(0);

/** restic's `summary` line of `backup --json`, in Walle's casing. */
export const backupSummarySchema = z.object({
  filesNew: z.int().min(0).describe("Files added."),
  filesChanged: z.int().min(0).describe("Files changed."),
  filesUnmodified: z.int().min(0).optional().describe("Files unchanged."),
  dataAdded: byteCount.describe("Bytes added to the repository."),
  totalFilesProcessed: z.int().min(0).optional().describe("Files read."),
  totalBytesProcessed: byteCount.describe("Bytes read."),
  totalDuration: z.number().min(0).describe("Seconds the backup took."),
});
export type BackupSummary = z.output<typeof backupSummarySchema>;

export const HookOutcome = { Succeeded: "Succeeded", Failed: "Failed", TimedOut: "TimedOut", Interrupted: "Interrupted" } as const;
export type HookOutcome = ValueOf<typeof HookOutcome>;

/** One snapshot hook: what runs where, written before it runs (so its end is always looked for), then how it ended. */
export const hookRunSchema = z.object({
  command: z.string().max(4096).describe("The command, run by /bin/sh -c."),
  from: z.enum(["BackupJob", "Annotation"]).describe("Where the command came from: the BackupJob (or its schedule's plan), or the pods' annotation."),
  targets: z
    .array(z.object({ pod: z.string().max(253), container: z.string().max(63) }))
    .max(16)
    .describe("The containers it runs in: of each pod that mounts the PVC, the first container that mounts it."),
  startTime: timeSchema.optional().describe("When Walle started it; set before it runs."),
  finishTime: timeSchema.optional().describe("When it ended."),
  outcome: z.enum(HookOutcome).optional().describe("How it ended; Interrupted when Walle stopped while it ran."),
  output: z.string().max(4096).optional().describe("The tail of its output (stdout and stderr), per container."),
});
export type HookRun = z.output<typeof hookRunSchema>;

export const backupJobStatusSchema = z.object({
  observedGeneration: observedGenerationSchema.optional(),
  phase: z.enum(BackupJobPhase).optional().describe("Where the backup is."),
  startTime: timeSchema.optional().describe("When the snapshot was taken."),
  finishTime: timeSchema.optional().describe("When the backup finished or failed."),
  conditions: conditionsSchema.optional(),
  logs: z.string().optional().describe("The tail of the worker's output."),
  snapshotId: z.string().max(64).optional().describe("(new) The restic snapshot the backup made."),
  summary: backupSummarySchema.optional().describe("(new) What the backup did, from restic's summary."),
  progress: progressSchema.optional(),
  stream: z
    .object({
      command: z.string().max(4096).describe("The command whose output is backed up, run by /bin/sh -c."),
      from: z
        .enum(["BackupJob", "Annotation"])
        .describe("Where it came from: the BackupJob (or its schedule's plan), or the pod's ros.io/backup-command annotation."),
      pod: z.string().max(253),
      container: z.string().max(63),
      fileName: z.string().max(255).describe("The file it is in, in the restic snapshot."),
    })
    .optional()
    .describe("(new) The backup of a command's output, instead of a snapshot: what runs where, and the file it becomes."),
  hooks: z
    .object({ before: hookRunSchema.optional(), after: hookRunSchema.optional() })
    .optional()
    .describe("(new) The snapshot hooks: before runs before the snapshot is taken, after once it is cut (whatever happened, once before has run)."),
});
export type BackupJobStatus = z.output<typeof backupJobStatusSchema>;

export const backupJobKind: KindDefinition = {
  kind: "BackupJob",
  plural: "backupjobs",
  singular: "backupjob",
  shortNames: ["backup-job"],
  scope: "Namespaced",
  description:
    "A backup of one PVC into a restic repository: a CSI snapshot of the PVC, mounted read-only by a worker. " +
    "A BackupSchedule creates these; you may create one yourself for a backup now.",
  spec: backupJobSpecSchema,
  status: backupJobStatusSchema,
  printerColumns: [
    { name: "Status", type: "string", jsonPath: ".status.phase", description: "Where the backup is." },
    { name: "PVC", type: "string", jsonPath: ".spec.sourcePvc", description: "The PVC backed up." },
    progressColumn,
    { name: "Snapshot", type: "string", jsonPath: ".status.snapshotId", description: "The restic snapshot made." },
    repositoryColumn,
    ageColumn,
  ],
};

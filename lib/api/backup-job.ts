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
import { immutable } from "./rules.ts";

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
} as const;
export type BackupJobConditionType = ValueOf<typeof BackupJobConditionType>;

const commandSchema = z.string().max(4096);

export const backupJobSpecSchema = immutable(
  z.object({
    sourcePvc: objectName("sourcePvc").describe("The PVC to back up, in the BackupJob's namespace."),
    repository: repositoryRefSchema,
    beforeSnapshot: commandSchema
      .optional()
      .describe("A command run in the pod that mounts the PVC before its snapshot is taken."),
    afterSnapshot: commandSchema.optional().describe("A command run in the pod that mounts the PVC after its snapshot is taken."),
    workerSecurityContext: workerSecurityContextSchema.optional(),
  }),
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

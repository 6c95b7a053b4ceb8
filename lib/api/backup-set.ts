import { z } from "zod";
import { labelSelectorSchema, observedGenerationSchema, timeSchema } from "./common.ts";
import type { ValueOf } from "./constants.ts";
import { ageColumn } from "./kind.ts";
import type { KindDefinition } from "./kind.ts";

export const BackupSetState = {
  Running: "Running",
  Finished: "Finished",
  FinishedWithFailures: "FinishedWithFailures",
} as const;
export type BackupSetState = ValueOf<typeof BackupSetState>;

export const backupSetSpecSchema = z.object({
  selector: labelSelectorSchema.describe("Selects the BackupJobs of this run."),
});
export type BackupSetSpec = z.output<typeof backupSetSpecSchema>;

const jobCount = z.int().min(0);

export const backupSetStatisticsSchema = z.object({
  totalJobs: jobCount.describe("BackupJobs in the set."),
  runningJobs: jobCount.describe("BackupJobs that are under way."),
  finishedJobs: jobCount.describe("BackupJobs that finished."),
  failedJobs: jobCount.describe("BackupJobs that failed."),
  unstartedJobs: jobCount.describe("BackupJobs not started yet."),
});
export type BackupSetStatistics = z.output<typeof backupSetStatisticsSchema>;

export const backupSetStatusSchema = z.object({
  observedGeneration: observedGenerationSchema.optional(),
  state: z.enum(BackupSetState).optional().describe("Running until every BackupJob has finished or failed."),
  finishTime: timeSchema.optional().describe("When the last BackupJob finished."),
  completions: z.string().max(64).optional().describe('Finished of total BackupJobs, e.g. "3/4".'),
  statistics: backupSetStatisticsSchema.optional().describe("BackupJobs by phase."),
});
export type BackupSetStatus = z.output<typeof backupSetStatusSchema>;

export const backupSetKind: KindDefinition = {
  kind: "BackupSet",
  plural: "backupsets",
  singular: "backupset",
  shortNames: ["backup-set"],
  scope: "Cluster",
  description: "One run of a BackupSchedule: the BackupJobs it started together. Walle creates these.",
  spec: backupSetSpecSchema,
  status: backupSetStatusSchema,
  printerColumns: [
    { name: "Completions", type: "string", jsonPath: ".status.completions", description: "Finished of total BackupJobs." },
    { name: "Status", type: "string", jsonPath: ".status.state", description: "State of the run." },
    {
      name: "FinishTime",
      type: "date",
      jsonPath: ".status.finishTime",
      description: "When the last BackupJob finished.",
      priority: 1,
    },
    ageColumn,
  ],
};

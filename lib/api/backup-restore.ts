import { z } from "zod";
import {
  conditionsSchema,
  namespaceName,
  objectName,
  observedGenerationSchema,
  progressSchema,
  repositoryRefSchema,
  snapshotIdSchema,
  storageSizeSchema,
  timeSchema,
  workerSecurityContextSchema,
} from "./common.ts";
import { ConditionType } from "./conditions.ts";
import type { ValueOf } from "./constants.ts";
import { ageColumn, progressColumn, repositoryColumn } from "./kind.ts";
import type { KindDefinition } from "./kind.ts";
import { immutable, withRules } from "./rules.ts";

// (new) BackupRestore has no counterpart in the original, which left restores to a manual `restic mount`.

export const BackupRestorePhase = {
  NotStarted: "NotStarted",
  ResolvingSnapshot: "ResolvingSnapshot",
  PreparingTarget: "PreparingTarget",
  WaitingRestore: "WaitingRestore",
  Restoring: "Restoring",
  Finished: "Finished",
  Failed: "Failed",
} as const;
export type BackupRestorePhase = ValueOf<typeof BackupRestorePhase>;

export const BackupRestoreConditionType = {
  SnapshotResolved: ConditionType.SnapshotResolved,
  TargetReady: ConditionType.TargetReady,
  RestoreState: ConditionType.RestoreState,
  FullFidelity: ConditionType.FullFidelity,
  CleanedUp: ConditionType.CleanedUp,
} as const;
export type BackupRestoreConditionType = ValueOf<typeof BackupRestoreConditionType>;

export const AccessMode = {
  ReadWriteOnce: "ReadWriteOnce",
  ReadOnlyMany: "ReadOnlyMany",
  ReadWriteMany: "ReadWriteMany",
  ReadWriteOncePod: "ReadWriteOncePod",
} as const;
export type AccessMode = ValueOf<typeof AccessMode>;

/** Which PVC's snapshots to choose from: Walle tags each snapshot with the PVC, its namespace and the cluster. */
const pvcSnapshotsShape = {
  pvc: objectName("pvc").describe("The PVC the snapshot was taken of."),
  namespace: namespaceName.optional().describe("The namespace that PVC was in. Default: the BackupRestore's namespace."),
  cluster: z.string().min(1).max(253).optional().describe("The cluster_name the backup ran in (restic's --host). Default: this cluster's."),
};

const SOURCE_SELECTORS = ["snapshotId", "latest", "latestBefore"] as const;

export const restoreSourceSchema = withRules(
  z.object({
    snapshotId: snapshotIdSchema.optional().describe("Restore this restic snapshot."),
    latest: z.object(pvcSnapshotsShape).optional().describe("Restore the newest snapshot of a PVC."),
    latestBefore: z
      .object({ ...pvcSnapshotsShape, time: timeSchema.describe("Only snapshots taken before this time count.") })
      .optional()
      .describe("Restore the newest snapshot of a PVC taken before a time."),
  }),
  {
    cel: `${SOURCE_SELECTORS.map((key) => `(has(self.${key}) ? 1 : 0)`).join(" + ")} == 1`,
    message: `exactly one of ${SOURCE_SELECTORS.join(", ")} must be set`,
    holds: (source) => SOURCE_SELECTORS.filter((key) => source[key] !== undefined).length === 1,
  },
);
export type RestoreSource = z.output<typeof restoreSourceSchema>;

export const restoreTargetSchema = withRules(
  z.object({
    existingPvc: objectName("existingPvc")
      .optional()
      .describe(
        "Restore into this existing PVC in the BackupRestore's namespace. Its content is replaced: files that are not " +
          "in the snapshot are deleted (restic restore --delete), unless merge is true.",
      ),
    merge: z
      .boolean()
      .optional()
      .describe(
        "(existingPvc only) Keep the PVC's files that are not in the snapshot; files that are in it are still " +
          "overwritten. Default false: the PVC ends up holding exactly the snapshot.",
      ),
    newPvc: z
      .object({
        name: objectName("name").describe("Name of the PVC to create in the BackupRestore's namespace."),
        storageClassName: objectName("storageClassName").optional().describe("Its StorageClass. Default: the cluster's default StorageClass."),
        size: storageSizeSchema.describe("Its requested size, e.g. 10Gi."),
        accessModes: z.array(z.enum(AccessMode)).min(1).max(4).default([AccessMode.ReadWriteOnce]).describe("Its access modes."),
      })
      .optional()
      .describe("Create a PVC and restore into it."),
    allowInUse: z
      .boolean()
      .optional()
      .describe(
        "Restore into existingPvc even while running pods mount it. Default false: the restore is refused, since " +
          "files changing under a running application can corrupt its data.",
      ),
  }),
  {
    cel: "has(self.existingPvc) != has(self.newPvc)",
    message: "exactly one of existingPvc and newPvc must be set",
    holds: (target) => (target.existingPvc === undefined) !== (target.newPvc === undefined),
  },
  {
    cel: "!has(self.merge) || has(self.existingPvc)",
    message: "merge applies only to existingPvc: a newPvc starts empty",
    fieldPath: ".merge",
    holds: (target) => target.merge === undefined || target.existingPvc !== undefined,
  },
);
export type RestoreTarget = z.output<typeof restoreTargetSchema>;

export const backupRestoreSpecSchema = immutable(
  z.object({
    repository: repositoryRefSchema,
    source: restoreSourceSchema.describe("The snapshot to restore: by id, the newest of a PVC, or the newest before a time."),
    target: restoreTargetSchema.describe("The PVC to restore into."),
    include: z
      .array(z.string().min(1).max(4096))
      .max(64)
      .optional()
      .describe("Restore only these paths of the snapshot (restic --include). Default: everything."),
    workerSecurityContext: workerSecurityContextSchema.optional(),
  }),
  // A restore writes into a PVC once; changing what or where after it started would leave a mix of both.
  "spec is immutable: create a new BackupRestore to restore something else",
);
export type BackupRestoreSpec = z.output<typeof backupRestoreSpecSchema>;

/** restic's `summary` line of `restore --json`, in Walle's casing. */
export const restoreSummarySchema = z.object({
  totalFiles: z.int().min(0).describe("Files in the snapshot that were selected."),
  filesRestored: z.int().min(0).describe("Files written."),
  filesSkipped: z.int().min(0).optional().describe("Files already up to date."),
  totalBytes: z.int().min(0).describe("Bytes selected."),
  bytesRestored: z.int().min(0).describe("Bytes written."),
  bytesSkipped: z.int().min(0).optional().describe("Bytes already up to date."),
  totalDuration: z.number().min(0).describe("Seconds the restore took."),
});
export type RestoreSummary = z.output<typeof restoreSummarySchema>;

export const backupRestoreStatusSchema = z.object({
  observedGeneration: observedGenerationSchema.optional(),
  phase: z.enum(BackupRestorePhase).optional().describe("Where the restore is."),
  snapshotId: z.string().max(64).optional().describe("The restic snapshot chosen."),
  startTime: timeSchema.optional().describe("When the restore started."),
  finishTime: timeSchema.optional().describe("When the restore finished or failed."),
  conditions: conditionsSchema.optional(),
  progress: progressSchema.optional(),
  summary: restoreSummarySchema.optional().describe("What the restore did, from restic's summary."),
});
export type BackupRestoreStatus = z.output<typeof backupRestoreStatusSchema>;

export const backupRestoreKind: KindDefinition = {
  kind: "BackupRestore",
  plural: "backuprestores",
  singular: "backuprestore",
  shortNames: ["backup-restore"],
  scope: "Namespaced",
  description: "(new) A restore of one restic snapshot into a PVC of this namespace: an existing one, or a new one Walle creates.",
  spec: backupRestoreSpecSchema,
  status: backupRestoreStatusSchema,
  printerColumns: [
    { name: "Status", type: "string", jsonPath: ".status.phase", description: "Where the restore is." },
    progressColumn,
    { name: "Snapshot", type: "string", jsonPath: ".status.snapshotId", description: "The restic snapshot chosen." },
    repositoryColumn,
    ageColumn,
  ],
};

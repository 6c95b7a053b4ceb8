import { z } from "zod";

// The original operator's configuration file (APP_CONFIG, or the Helm chart's `config:` values). Its snake_case
// keys are kept so an existing file works unchanged.

export const snapClassMappingSchema = z.object({
  storage_class: z.string().min(1).describe("A StorageClass name."),
  snapshot_class: z.string().min(1).describe("The VolumeSnapshotClass to snapshot its PVCs with."),
});
export type SnapClassMapping = z.output<typeof snapClassMappingSchema>;

export const operatorConfigSchema = z.object({
  backup_job_image: z.string().min(1).describe("The worker image."),
  cluster_name: z.string().min(1).describe("Passed to restic as --host, so snapshots group by cluster."),
  // Unlike the original, a StorageClass without a mapping is not skipped: the default VolumeSnapshotClass of
  // the PVC's CSI driver is used, so the list may be empty.
  snap_class_mappings: z.array(snapClassMappingSchema).default([]),
  // The original ran workers under this account. Walle's workers run without a service-account token, so it is
  // accepted for compatibility and ignored.
  worker_service_account_name: z.string().optional(),
});
export type OperatorConfig = z.output<typeof operatorConfigSchema>;

/** The snapshot class mapped to a storage class, if any. */
export function mappedSnapshotClass(config: OperatorConfig, storageClass: string): string | undefined {
  return config.snap_class_mappings.find((mapping) => mapping.storage_class === storageClass)?.snapshot_class;
}

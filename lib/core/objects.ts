// The fields of Kubernetes' own objects that Walle reads, parsed with zod at the boundary so the pure core
// works on checked values. Loose objects: fields Walle does not read pass through untouched.
import { z } from "zod";
import { objectMetaSchema } from "../api/parse.ts";

const meta = objectMetaSchema;

export const pvcSchema = z.looseObject({
  metadata: meta,
  spec: z.looseObject({
    storageClassName: z.string().optional(),
    volumeName: z.string().optional(),
    accessModes: z.array(z.string()).optional(),
    resources: z.looseObject({ requests: z.record(z.string(), z.string()).optional() }).optional(),
    dataSource: z.looseObject({ kind: z.string(), name: z.string(), apiGroup: z.string().optional() }).optional(),
  }),
  status: z.looseObject({ phase: z.string().optional(), capacity: z.record(z.string(), z.string()).optional() }).optional(),
});
export type Pvc = z.output<typeof pvcSchema>;

export const pvSchema = z.looseObject({
  metadata: meta,
  spec: z.looseObject({
    persistentVolumeReclaimPolicy: z.string().optional(),
    storageClassName: z.string().optional(),
    claimRef: z.looseObject({ name: z.string().optional(), namespace: z.string().optional(), uid: z.string().optional() }).optional(),
  }),
  status: z.looseObject({ phase: z.string().optional() }).optional(),
});
export type Pv = z.output<typeof pvSchema>;

export const storageClassSchema = z.looseObject({ metadata: meta, provisioner: z.string() });
export type StorageClass = z.output<typeof storageClassSchema>;

export const volumeSnapshotClassSchema = z.looseObject({
  metadata: meta,
  driver: z.string(),
  deletionPolicy: z.enum(["Delete", "Retain"]),
});
export type VolumeSnapshotClass = z.output<typeof volumeSnapshotClassSchema>;

export const volumeSnapshotSchema = z.looseObject({
  metadata: meta,
  spec: z.looseObject({
    source: z.looseObject({ persistentVolumeClaimName: z.string().optional(), volumeSnapshotContentName: z.string().optional() }),
    volumeSnapshotClassName: z.string().optional(),
  }),
  status: z
    .looseObject({
      boundVolumeSnapshotContentName: z.string().optional(),
      readyToUse: z.boolean().optional(),
      restoreSize: z.union([z.string(), z.number()]).optional(),
      creationTime: z.string().optional(),
      error: z.looseObject({ message: z.string().optional(), time: z.string().optional() }).optional(),
    })
    .optional(),
});
export type VolumeSnapshot = z.output<typeof volumeSnapshotSchema>;

export const volumeSnapshotContentSchema = z.looseObject({
  metadata: meta,
  spec: z.looseObject({
    driver: z.string(),
    deletionPolicy: z.enum(["Delete", "Retain"]),
    volumeSnapshotClassName: z.string().optional(),
    source: z.looseObject({ volumeHandle: z.string().optional(), snapshotHandle: z.string().optional() }),
  }),
  status: z
    .looseObject({ snapshotHandle: z.string().optional(), readyToUse: z.boolean().optional(), restoreSize: z.number().optional() })
    .optional(),
});
export type VolumeSnapshotContent = z.output<typeof volumeSnapshotContentSchema>;

const terminatedSchema = z.looseObject({
  exitCode: z.int(),
  reason: z.string().optional(),
  message: z.string().optional(),
  startedAt: z.string().nullish(),
  finishedAt: z.string().nullish(),
});

export const podSchema = z.looseObject({
  metadata: meta,
  spec: z.looseObject({
    volumes: z.array(z.looseObject({ name: z.string(), persistentVolumeClaim: z.looseObject({ claimName: z.string() }).optional() })).optional(),
  }),
  status: z
    .looseObject({
      phase: z.string().optional(),
      reason: z.string().optional(),
      message: z.string().optional(),
      containerStatuses: z
        .array(
          z.looseObject({
            name: z.string(),
            state: z.looseObject({
              waiting: z.looseObject({ reason: z.string().optional(), message: z.string().optional() }).optional(),
              running: z.looseObject({}).optional(),
              terminated: terminatedSchema.optional(),
            }),
            lastState: z.looseObject({ terminated: terminatedSchema.optional() }).optional(),
          }),
        )
        .optional(),
    })
    .optional(),
});
export type Pod = z.output<typeof podSchema>;

export const jobSchema = z.looseObject({
  metadata: meta,
  status: z
    .looseObject({
      active: z.int().optional(),
      succeeded: z.int().optional(),
      failed: z.int().optional(),
      startTime: z.string().optional(),
      completionTime: z.string().optional(),
      conditions: z
        .array(z.looseObject({ type: z.string(), status: z.string(), reason: z.string().optional(), message: z.string().optional() }))
        .optional(),
    })
    .optional(),
});
export type Job = z.output<typeof jobSchema>;

/** Whether the job controller has finished a Job, and how. */
export function jobOutcome(job: Job): "Complete" | "Failed" | undefined {
  const done = job.status?.conditions?.find((c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True");
  return done?.type === "Complete" ? "Complete" : done?.type === "Failed" ? "Failed" : undefined;
}

export function jobFailureMessage(job: Job): string | undefined {
  const failed = job.status?.conditions?.find((c) => c.type === "Failed" && c.status === "True");
  return failed ? `${failed.reason ?? "Failed"}: ${failed.message ?? "the worker Job failed"}` : undefined;
}

// The fields of Kubernetes' objects that Walle reads, parsed with zod at the boundary so the pure core works on
// checked values. Loose objects: fields Walle does not read pass through untouched. Core kinds are typed as
// @kubernetes/client-node models them (lib/api/kube.ts); the snapshot kinds, which it does not model, by
// their schemas here.
import { z } from "zod";
import type { Job as JobModel, Pod as PodModel, Pv as PvModel, Pvc as PvcModel, StorageClass as StorageClassModel } from "../api/kube.ts";
import { resourceSchemas, objectMetaSchema } from "../api/parse.ts";
import type { KubeKind } from "./decision.ts";

const meta = objectMetaSchema;

type DeepPartial<T> = T extends readonly (infer U)[] ? DeepPartial<U>[] : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

/**
 * A schema of the fields Walle reads, typed as the model of the whole object: the API server validated the rest
 * against that very model. The compiler checks that what the schema checks agrees with the model.
 */
const asModel =
  <M>() =>
  <S extends z.ZodType>(schema: S & (z.output<S> extends DeepPartial<M> ? unknown : never)): z.ZodType<M> =>
    schema as unknown as z.ZodType<M>;

export const pvcSchema = asModel<PvcModel>()(
  z.looseObject({
    metadata: meta,
    spec: z.looseObject({
      storageClassName: z.string().optional(),
      volumeName: z.string().optional(),
      accessModes: z.array(z.string()).optional(),
      resources: z.looseObject({ requests: z.record(z.string(), z.string()).optional() }).optional(),
      dataSource: z.looseObject({ kind: z.string(), name: z.string(), apiGroup: z.string().optional() }).optional(),
    }),
    status: z.looseObject({ phase: z.string().optional(), capacity: z.record(z.string(), z.string()).optional() }).optional(),
  }),
);
export type Pvc = PvcModel;

export const pvSchema = asModel<PvModel>()(
  z.looseObject({
    metadata: meta,
    spec: z.looseObject({
      persistentVolumeReclaimPolicy: z.string().optional(),
      storageClassName: z.string().optional(),
      claimRef: z.looseObject({ name: z.string().optional(), namespace: z.string().optional(), uid: z.string().optional() }).optional(),
    }),
    status: z.looseObject({ phase: z.string().optional() }).optional(),
  }),
);
export type Pv = PvModel;

export const storageClassSchema = asModel<StorageClassModel>()(z.looseObject({ metadata: meta, provisioner: z.string() }));
export type StorageClass = StorageClassModel;

export const volumeSnapshotClassSchema = z.looseObject({
  metadata: meta,
  driver: z.string(),
  deletionPolicy: z.enum(["Delete", "Retain"]),
});
export type VolumeSnapshotClass = z.output<typeof volumeSnapshotClassSchema>;

/** A snapshot's or content's error, as the snapshot controller and csi-snapshotter write it. */
const snapshotError = z.looseObject({ message: z.string().optional(), time: z.string().optional() });

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
      error: snapshotError.optional(),
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
    sourceVolumeMode: z.enum(["Filesystem", "Block"]).optional(),
    source: z.looseObject({ volumeHandle: z.string().optional(), snapshotHandle: z.string().optional() }),
  }),
  status: z
    .looseObject({
      snapshotHandle: z.string().optional(),
      readyToUse: z.boolean().optional(),
      restoreSize: z.number().optional(),
      error: snapshotError.optional(),
    })
    .optional(),
});
export type VolumeSnapshotContent = z.output<typeof volumeSnapshotContentSchema>;

const terminatedSchema = z.looseObject({
  exitCode: z.int(),
  reason: z.string().optional(),
  message: z.string().optional(),
  // metav1.Time marshals its zero value as null.
  startedAt: z
    .string()
    .nullish()
    .transform((v) => v ?? undefined),
  finishedAt: z
    .string()
    .nullish()
    .transform((v) => v ?? undefined),
});

export const podSchema = asModel<PodModel>()(
  z.looseObject({
    metadata: meta,
    spec: z.looseObject({
      volumes: z.array(z.looseObject({ name: z.string(), persistentVolumeClaim: z.looseObject({ claimName: z.string() }).optional() })).optional(),
      containers: z.array(z.looseObject({ name: z.string(), volumeMounts: z.array(z.looseObject({ name: z.string() })).optional() })).optional(),
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
  }),
);
export type Pod = PodModel;

export const jobSchema = asModel<JobModel>()(
  z.looseObject({
    metadata: meta,
    status: z
      .looseObject({
        active: z.int().optional(),
        ready: z.int().optional(),
        succeeded: z.int().optional(),
        failed: z.int().optional(),
        startTime: z.string().optional(),
        completionTime: z.string().optional(),
        conditions: z.array(z.looseObject({ type: z.string(), status: z.string(), reason: z.string().optional(), message: z.string().optional() })).optional(),
      })
      .optional(),
  }),
);
export type Job = JobModel;

/** Whether the job controller has finished a Job, and how. */
export function jobOutcome(job: {
  readonly status?: { readonly conditions?: readonly { readonly type: string; readonly status: string }[] };
}): "Complete" | "Failed" | undefined {
  const done = job.status?.conditions?.find((c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True");
  return done?.type === "Complete" ? "Complete" : done?.type === "Failed" ? "Failed" : undefined;
}

/** Whether one of a Job's pods runs (is Ready), by the job controller's own count: no read of the pods needed. */
export function jobHasRunningPod(job: Job): boolean {
  return (job.status?.ready ?? 0) > 0;
}

export function jobFailureMessage(job: Job): string | undefined {
  const failed = job.status?.conditions?.find((c) => c.type === "Failed" && c.status === "True");
  return failed ? `${failed.reason ?? "Failed"}: ${failed.message ?? "the worker Job failed"}` : undefined;
}

/** An object's metadata and where it is: phase or state, and conditions. */
export const statusSummarySchema = z.looseObject({
  phase: z.string().optional(),
  state: z.string().optional(),
  conditions: z.array(z.looseObject({ type: z.string(), status: z.string(), reason: z.string().optional() })).optional(),
});
export const objectSummarySchema = z.looseObject({ metadata: meta, status: statusSummarySchema.optional().catch(undefined) });
export type ObjectSummary = z.output<typeof objectSummarySchema>;

/** The schema each read of a kind parses with. */
export const readSchemas: Readonly<Record<KubeKind, z.ZodType>> = {
  ...resourceSchemas,
  Job: jobSchema,
  Pod: podSchema,
  PersistentVolumeClaim: pvcSchema,
  PersistentVolume: pvSchema,
  StorageClass: storageClassSchema,
  VolumeSnapshot: volumeSnapshotSchema,
  VolumeSnapshotContent: volumeSnapshotContentSchema,
  VolumeSnapshotClass: volumeSnapshotClassSchema,
  Namespace: objectSummarySchema,
};

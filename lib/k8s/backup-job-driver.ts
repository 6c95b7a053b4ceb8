// Drives one BackupJob one step: observe what its phase needs, decide (pure), act, write status once, record
// the transition as an Event. Level-triggered: it reads the current state whatever the prompt was.
import type { Logger } from "pino";
import type { z } from "zod";
import { backupJobSchema } from "../api/parse.ts";
import { BackupJobConditionType, BackupJobPhase, type BackupJobStatus } from "../api/backup-job.ts";
import { ConditionStatus } from "../api/constants.ts";
import { backupJobReads, decideBackupJob, workerNamespace, type BackupJobWorld, type Decision } from "../core/backup-job.ts";
import type { WalleConfig } from "../core/builders.ts";
import { rfc3339, setCondition } from "../core/conditions.ts";
import { backupJobChildNames } from "../core/names.ts";
import {
  jobSchema,
  podSchema,
  pvcSchema,
  storageClassSchema,
  volumeSnapshotClassSchema,
  volumeSnapshotContentSchema,
  volumeSnapshotSchema,
} from "../core/objects.ts";
import { getOrNull, list, performAll, read, recordEvent, writeStatus } from "./actions.ts";
import { collectionPath, objectPath } from "./paths.ts";
import type { RestClient } from "./rest.ts";

export interface DriverContext {
  readonly api: RestClient;
  readonly config: WalleConfig;
  readonly log: Logger;
  readonly now: () => Date;
  readonly controller: { readonly name: string; readonly instance: string };
}

export interface DriveResult {
  readonly found: boolean;
  readonly phase?: string;
  readonly changed: boolean;
  /** The BackupSet this object belongs to, so its aggregate can follow. */
  readonly backupSet?: string;
}

export async function driveBackupJob(ctx: DriverContext, namespace: string, name: string): Promise<DriveResult> {
  const { api, config } = ctx;
  const path = objectPath("BackupJob", name, namespace);
  const raw = await getOrNull<{ metadata?: { uid?: string; deletionTimestamp?: string }; status?: unknown }>(api, path);
  if (raw === null) return { found: false, changed: false };
  const parsed = backupJobSchema.safeParse(raw);
  if (!parsed.success) return failInvalid(ctx, path, raw, parsed.error);
  const bj = parsed.data;
  if (bj.metadata.deletionTimestamp) return { found: true, changed: false, phase: bj.status?.phase };
  const status: BackupJobStatus = bj.status ?? {};
  const ref = {
    namespace,
    name,
    uid: bj.metadata.uid ?? "",
    generation: bj.metadata.generation,
    labels: bj.metadata.labels ?? {},
    creationTimestamp: bj.metadata.creationTimestamp,
  };
  const workerNs = workerNamespace(bj.spec, config);
  const reads = backupJobReads(status, workerNs !== namespace);
  const names = backupJobChildNames(ref);
  const world = await observe(api, reads, { ...ref, spec: bj.spec, status, workerNs, names });
  const decision = decideBackupJob(world, config, ctx.now());
  const changed = await applyDecision(ctx, { kind: "BackupJob", namespace, name, uid: bj.metadata.uid, resourceVersion: bj.metadata.resourceVersion }, bj.status ?? {}, decision);
  return { found: true, changed, phase: decision.status.phase, backupSet: bj.metadata.labels?.["ros.io/backupset"] };
}

/**
 * The executor's one sequence for a decision about a Walle object: perform its actions, write its status once
 * (with the resourceVersion read as precondition), record its Events, and log a phase change.
 */
export async function applyDecision(
  ctx: DriverContext,
  object: { kind: "BackupJob" | "BackupRestore"; namespace: string; name: string; uid?: string; resourceVersion?: string },
  before: { phase?: string },
  decision: Decision<{ phase?: string }>,
): Promise<boolean> {
  const path = objectPath(object.kind, object.name, object.namespace);
  await performAll(ctx.api, decision.actions);
  const changed = await writeStatus(ctx.api, path, before, decision.status, object.resourceVersion);
  const regarding = { apiVersion: "ros.io/v1", kind: object.kind, namespace: object.namespace, name: object.name, uid: object.uid };
  for (const e of decision.events) await recordEvent(ctx.api, regarding, e, ctx.controller, ctx.now());
  if (before.phase !== decision.status.phase) {
    ctx.log.info(
      { from: before.phase ?? "NotStarted", to: decision.status.phase, actions: decision.actions.length },
      `${object.kind} ${object.namespace}/${object.name} moved to ${decision.status.phase}`,
    );
  }
  return changed;
}

interface ObserveInput {
  namespace: string;
  name: string;
  uid: string;
  generation?: number;
  labels: Record<string, string>;
  creationTimestamp?: string;
  spec: BackupJobWorld["spec"];
  status: BackupJobStatus;
  workerNs: string;
  names: ReturnType<typeof backupJobChildNames>;
}

/** Reads what the phase needs, independent reads in parallel. */
async function observe(api: RestClient, reads: ReadonlySet<keyof BackupJobWorld>, o: ObserveInput): Promise<BackupJobWorld> {
  const ns = o.namespace;
  const want = (k: keyof BackupJobWorld) => reads.has(k);
  const [pvc, snapshotClasses, sourceSnapshot, movedContent, movedSnapshot, workerJob] = await Promise.all([
    want("pvc") ? read(api, pvcSchema, objectPath("PersistentVolumeClaim", o.spec.sourcePvc, ns)) : undefined,
    // From the API server's cache (resourceVersion 0): a quorum read waits for the cache to catch up with the
    // latest write anywhere in the cluster, and classes change about never.
    want("snapshotClasses") ? list(api, volumeSnapshotClassSchema, collectionPath("VolumeSnapshotClass"), undefined, { resourceVersion: "0" }) : undefined,
    want("sourceSnapshot") ? read(api, volumeSnapshotSchema, objectPath("VolumeSnapshot", o.names.sourceSnapshot, ns)) : undefined,
    want("movedContent") ? read(api, volumeSnapshotContentSchema, objectPath("VolumeSnapshotContent", o.names.movedContent)) : undefined,
    want("movedSnapshot") ? read(api, volumeSnapshotSchema, objectPath("VolumeSnapshot", o.names.movedSnapshot, o.workerNs)) : undefined,
    want("workerJob") ? read(api, jobSchema, objectPath("Job", o.names.job, o.workerNs)) : undefined,
  ]);
  const scName = pvc?.spec.storageClassName;
  const boundContent = sourceSnapshot?.status?.boundVolumeSnapshotContentName;
  const jobSettled = workerJob && (workerJob.status?.conditions?.some((c) => c.status === "True" && (c.type === "Complete" || c.type === "Failed")) || (o.status.phase === BackupJobPhase.WaitingBackup && (workerJob.status?.active ?? 0) > 0));
  const [storageClass, sourceContent, workerPods] = await Promise.all([
    want("storageClass") && scName ? read(api, storageClassSchema, objectPath("StorageClass", scName)) : want("storageClass") ? null : undefined,
    want("sourceContent") ? (boundContent ? read(api, volumeSnapshotContentSchema, objectPath("VolumeSnapshotContent", boundContent)) : null) : undefined,
    want("workerPods") && jobSettled ? list(api, podSchema, collectionPath("Pod", o.workerNs), `job-name=${o.names.job}`) : undefined,
  ]);
  return {
    job: { namespace: ns, name: o.name, uid: o.uid, generation: o.generation, labels: o.labels, creationTimestamp: o.creationTimestamp },
    spec: o.spec,
    status: o.status,
    pvc,
    storageClass,
    snapshotClasses,
    sourceSnapshot,
    sourceContent,
    movedContent,
    movedSnapshot,
    workerJob,
    workerPods,
  };
}

/**
 * A BackupJob the API server accepted but Walle cannot read (written before a rule existed, say): it fails with
 * a condition that names the fields, and nothing is created for it.
 */
async function failInvalid(ctx: DriverContext, path: string, raw: { status?: unknown }, error: z.ZodError): Promise<DriveResult> {
  const message = `The BackupJob is invalid: ${error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`;
  const now = ctx.now();
  const before = (raw.status ?? {}) as BackupJobStatus;
  if (before.phase === BackupJobPhase.Failed) return { found: true, changed: false, phase: before.phase };
  const status: BackupJobStatus = {
    phase: BackupJobPhase.Failed,
    finishTime: rfc3339(now),
    conditions: setCondition(undefined, { type: BackupJobConditionType.BackupState, status: ConditionStatus.False, reason: "InvalidSpec", message }, now),
  };
  const changed = await writeStatus(ctx.api, path, before, status);
  ctx.log.warn({ issues: error.issues.length }, message);
  return { found: true, changed, phase: BackupJobPhase.Failed };
}

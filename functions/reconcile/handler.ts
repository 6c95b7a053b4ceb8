// What each CloudEvent means for the cluster. ApiServerSource events prompt a level-triggered re-read of the
// Walle object they concern; forced backups create a BackupJob; a resync drives all in-flight work; worker
// progress updates a BackupJob's status.progress. The HTTP shell (server.ts) turns results into status codes.
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { CloudEventV1 } from "cloudevents";
import type { Logger } from "pino";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { BackupJobPhase } from "../../lib/api/backup-job.ts";
import { backupRestoreSpecSchema } from "../../lib/api/backup-restore.ts";
import { namespaceName, objectName } from "../../lib/api/common.ts";
import { operatorConfigSchema } from "../../lib/api/config.ts";
import { API_VERSION, CREATED_BY, INSTALL_NAMESPACE, Label } from "../../lib/api/constants.ts";
import type { WalleConfig } from "../../lib/core/builders.ts";
import { isTerminal } from "../../lib/core/backup-job.ts";
import { boundedName, shortHash } from "../../lib/core/names.ts";
import { movesOwner, targetOf, updateMovesBackupJob, type EventObject, type Target } from "../../lib/core/routing.ts";
import { getOrNull } from "../../lib/k8s/actions.ts";
import { driveBackupJob, type DriverContext } from "../../lib/k8s/backup-job-driver.ts";
import { driveBackupRestore } from "../../lib/k8s/backup-restore-driver.ts";
import { driveBackupSet } from "../../lib/k8s/backup-set-driver.ts";
import { collectionPath, isKnownKind, objectPath } from "../../lib/k8s/paths.ts";
import { resync } from "../../lib/k8s/resync.ts";
import { defaultCredentials, isAlreadyExists, isConflict, RestClient } from "../../lib/k8s/rest.ts";
import { BadEventError, EventType, type EventHandler, type HandlerResult } from "./contract.ts";

type Env = Readonly<Record<string, string | undefined>>;

const seconds = (fallback: number) => z.coerce.number().int().positive().default(fallback);

/** The reconcile function's environment. The operator config file (the original's format) is optional. */
const envSchema = z.object({
  WALLE_CONFIG: z.string().optional(),
  WALLE_WORKER_IMAGE: z.string().min(1).optional(),
  WALLE_CLUSTER_NAME: z.string().min(1).optional(),
  WALLE_INSTALL_NAMESPACE: z.string().default(INSTALL_NAMESPACE),
  WALLE_PROGRESS_SINK_URL: z.url().optional(),
  WALLE_DEFAULT_REPOSITORY: z.string().optional(),
  WALLE_WORKER_DEADLINE_SECONDS: seconds(6 * 3600),
  WALLE_SNAPSHOT_TIMEOUT_SECONDS: seconds(600),
  WALLE_WORKER_BACKOFF_LIMIT: z.coerce.number().int().min(0).max(10).default(2),
  POD_NAME: z.string().optional(),
});

export function configFromEnv(env: Env): WalleConfig & { defaultRepository?: string } {
  const e = envSchema.parse(env);
  const file = e.WALLE_CONFIG ? operatorConfigSchema.partial().parse(parseYaml(readFileSync(e.WALLE_CONFIG, "utf8"))) : {};
  const workerImage = e.WALLE_WORKER_IMAGE ?? file.backup_job_image;
  const clusterName = e.WALLE_CLUSTER_NAME ?? file.cluster_name;
  if (!workerImage) throw new Error("WALLE_WORKER_IMAGE (or backup_job_image in WALLE_CONFIG) is required");
  if (!clusterName) throw new Error("WALLE_CLUSTER_NAME (or cluster_name in WALLE_CONFIG) is required");
  return {
    installNamespace: e.WALLE_INSTALL_NAMESPACE,
    clusterName,
    workerImage,
    snapClassMappings: file.snap_class_mappings ?? [],
    ...(e.WALLE_PROGRESS_SINK_URL ? { progressSinkUrl: e.WALLE_PROGRESS_SINK_URL } : {}),
    workerDeadlineSeconds: e.WALLE_WORKER_DEADLINE_SECONDS,
    snapshotTimeoutSeconds: e.WALLE_SNAPSHOT_TIMEOUT_SECONDS,
    workerBackoffLimit: e.WALLE_WORKER_BACKOFF_LIMIT,
    ...(e.WALLE_DEFAULT_REPOSITORY ? { defaultRepository: e.WALLE_DEFAULT_REPOSITORY } : {}),
  };
}

const objectSchema = z.looseObject({
  apiVersion: z.string(),
  kind: z.string(),
  status: z
    .looseObject({
      phase: z.string().optional(),
      observedGeneration: z.number().optional(),
      readyToUse: z.boolean().optional(),
      error: z.unknown().optional(),
      conditions: z.array(z.looseObject({ type: z.string(), status: z.string() })).optional(),
    })
    .optional()
    .catch(undefined),
  metadata: z.looseObject({
    name: z.string(),
    generation: z.number().optional(),
    namespace: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    ownerReferences: z.array(z.looseObject({ apiVersion: z.string(), kind: z.string(), name: z.string(), controller: z.boolean().optional() })).optional(),
  }),
});

const refSchema = z.object({ apiVersion: z.string(), kind: z.string(), name: z.string(), namespace: z.string().optional() });

export const backupRequestSchema = z.object({
  namespace: namespaceName,
  pvc: objectName("pvc"),
  repository: z.object({ name: objectName("repository.name"), namespace: namespaceName.optional() }).optional(),
});
export type BackupRequest = z.output<typeof backupRequestSchema>;

/** A BackupRestore's spec plus the namespace to restore in; the schema's own rules (exactly one source, one target) apply. */
export const restoreRequestSchema = backupRestoreSpecSchema.and(z.object({ namespace: namespaceName }));

const progressSchema = z.object({
  percentDone: z.number().min(0).max(1),
  filesDone: z.int().min(0).optional(),
  totalFiles: z.int().min(0).optional(),
  bytesDone: z.int().min(0).optional(),
  totalBytes: z.int().min(0).optional(),
  secondsRemaining: z.number().min(0).optional(),
});

/** A worker's progress more often than this is not written: status writes cost more than they show. */
const PROGRESS_MIN_INTERVAL_MS = 5_000;

function parseData<S extends z.ZodType>(schema: S, data: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(typeof data === "string" ? safeJson(data) : data);
  if (parsed.success) return parsed.data;
  throw new BadEventError(`${what}: data is invalid`, parsed.error.issues.map((i) => ({ path: ["data", ...i.path].join("."), message: i.message })));
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export interface HandlerOptions {
  readonly log: Logger;
  readonly env: Env;
  /** Whether the HTTP shell demands the trigger token: restores from a shared repository need it. */
  readonly triggerTokenConfigured?: boolean;
  readonly api?: RestClient;
  readonly now?: () => Date;
}

export async function createHandler(opts: HandlerOptions): Promise<EventHandler & { readonly ctx: DriverContext }> {
  const config = configFromEnv(opts.env);
  const api = opts.api ?? new RestClient(defaultCredentials(opts.env));
  const ctx: DriverContext = {
    api,
    config,
    log: opts.log,
    now: opts.now ?? (() => new Date()),
    controller: { name: "ros.io/walle-reconcile", instance: opts.env.POD_NAME ?? hostname() },
  };

  async function drive(target: Target, log: Logger): Promise<HandlerResult> {
    const c = { ...ctx, log };
    switch (target.kind) {
      case "BackupJob": {
        const r = await driveBackupJob(c, target.namespace, target.name);
        if (r.backupSet && r.changed) await driveBackupSet(c, r.backupSet);
        return { status: 200, body: { target, ...r } };
      }
      case "BackupSet":
        return { status: 200, body: { target, ...(await driveBackupSet(c, target.name)) } };
      case "BackupRestore":
        return { status: 200, body: { target, ...(await driveBackupRestore(c, target.namespace, target.name)) } };
    }
  }

  async function onApiServerEvent(event: CloudEventV1<unknown>, log: Logger, reference: boolean): Promise<HandlerResult> {
    let obj: EventObject | null;
    if (reference) {
      const ref = parseData(refSchema, event.data, event.type);
      if (!isKnownKind(ref.kind)) return { status: 200, body: { ignored: `kind ${ref.kind} is not Walle's` } };
      // Reference mode carries no labels: read the object to learn whose it is (gone: nothing left to do).
      obj = await getOrNull<EventObject>(api, objectPath(ref.kind, ref.name, ref.namespace));
      if (obj && !obj.kind) obj = { ...obj, kind: ref.kind, apiVersion: ref.apiVersion };
      if (!obj) return { status: 200, body: { ignored: `${ref.kind} ${ref.namespace ?? ""}/${ref.name} no longer exists` } };
    } else {
      obj = parseData(objectSchema, event.data, event.type);
    }
    const target = targetOf(obj);
    if (!target) return { status: 200, body: { ignored: `${obj.kind} ${obj.metadata.name} does not belong to a BackupJob or BackupSet` } };
    const change = event.type.endsWith(".delete") ? "delete" : event.type.endsWith(".add") ? "add" : "update";
    if (target.kind !== obj.kind && !movesOwner(obj, change)) {
      return { status: 200, body: { target, ignored: `this change of ${obj.kind} ${obj.metadata.name} cannot move its owner on` } };
    }
    // Only in Resource mode is the object the one the change wrote, so only there can an echo be told apart.
    if (!reference && change === "update" && !updateMovesBackupJob(obj)) {
      return { status: 200, body: { target, ignored: `this update of ${obj.kind} ${obj.metadata.name} cannot move it on` } };
    }
    return drive(target, log);
  }

  async function onBackupRequested(event: CloudEventV1<unknown>, log: Logger): Promise<HandlerResult> {
    const req = parseData(backupRequestSchema, event.data, event.type);
    const repository = req.repository ?? (config.defaultRepository ? { name: config.defaultRepository } : undefined);
    if (!repository) {
      throw new BadEventError("data.repository is required: no default repository is configured (WALLE_DEFAULT_REPOSITORY)", [
        { path: "data.repository", message: "is required" },
      ]);
    }
    const repoNs = repository.namespace ?? config.installNamespace;
    // Anyone in the cluster can send this event: never let it carry one tenant's data into another's repository.
    if (repoNs !== req.namespace && repoNs !== config.installNamespace) {
      throw new BadEventError(`data.repository.namespace must be ${req.namespace} (the PVC's) or ${config.installNamespace}`, [
        { path: "data.repository.namespace", message: `a PVC in ${req.namespace} may be backed up only into its own namespace's or the install namespace's repository` },
      ]);
    }
    const pvc = await getOrNull(api, objectPath("PersistentVolumeClaim", req.pvc, req.namespace));
    if (!pvc) {
      throw new BadEventError(`PersistentVolumeClaim ${req.namespace}/${req.pvc} was not found`, [{ path: "data.pvc", message: "not found" }]);
    }
    // The event id names the BackupJob, so a retried delivery of the same request makes no second backup.
    const name = boundedName([req.pvc, "forced", shortHash(event.id, 10)]);
    const body = {
      apiVersion: API_VERSION,
      kind: "BackupJob",
      metadata: { name, namespace: req.namespace, labels: { [Label.CreatedBy]: CREATED_BY }, annotations: { "ros.io/requested-by-event": event.id } },
      spec: { sourcePvc: req.pvc, repository: { name: repository.name, namespace: repoNs } },
    };
    const created = await api.create(collectionPath("BackupJob", req.namespace), body).then(
      () => true,
      (e: unknown) => {
        if (isAlreadyExists(e)) return false;
        throw e;
      },
    );
    log.info({ backupJob: `${req.namespace}/${name}`, created }, `BackupJob ${req.namespace}/${name} requested by event`);
    const phase = await firstStep(() => driveBackupJob({ ...ctx, log }, req.namespace, name));
    return { status: 202, body: { backupJob: { namespace: req.namespace, name }, created, phase } };
  }

  /**
   * The first step of what a request created, taken at once. The object exists either way, so a conflict with an
   * instance that the object's own event started does not fail the request: that instance takes the step.
   */
  async function firstStep(drive: () => Promise<{ phase?: string }>): Promise<string | undefined> {
    try {
      return (await drive()).phase;
    } catch (e) {
      if (isConflict(e)) return undefined;
      throw e;
    }
  }

  async function onRestoreRequested(event: CloudEventV1<unknown>, log: Logger): Promise<HandlerResult> {
    const req = parseData(restoreRequestSchema, event.data, event.type);
    const repoNs = req.repository.namespace ?? config.installNamespace;
    // Restores from a shared repository are admin-driven (DESIGN §3): only with the trigger token, which the
    // HTTP shell has already checked when one is configured.
    if (repoNs !== req.namespace && !opts.triggerTokenConfigured) {
      throw new BadEventError(`data.repository.namespace must be ${req.namespace}: restoring from another namespace's repository needs WALLE_TRIGGER_TOKEN`, [
        { path: "data.repository.namespace", message: "a shared repository can be restored from only by a request that carries the trigger token" },
      ]);
    }
    const name = boundedName(["restore", shortHash(event.id, 10)]);
    const { namespace, ...spec } = req;
    const body = {
      apiVersion: API_VERSION,
      kind: "BackupRestore",
      metadata: { name, namespace, labels: { [Label.CreatedBy]: CREATED_BY }, annotations: { "ros.io/requested-by-event": event.id } },
      spec: { ...spec, repository: { name: req.repository.name, namespace: repoNs } },
    };
    const created = await api.create(collectionPath("BackupRestore", namespace), body).then(
      () => true,
      (e: unknown) => {
        if (isAlreadyExists(e)) return false;
        throw e;
      },
    );
    log.info({ backupRestore: `${namespace}/${name}`, created }, `BackupRestore ${namespace}/${name} requested by event`);
    const phase = await firstStep(() => driveBackupRestore({ ...ctx, log }, namespace, name));
    return { status: 202, body: { backupRestore: { namespace, name }, created, phase } };
  }

  async function onProgress(event: CloudEventV1<unknown>, log: Logger): Promise<HandlerResult> {
    const progress = parseData(progressSchema, event.data, event.type);
    const m = /^\/apis\/ros\.io\/v1\/namespaces\/([^/]+)\/backupjobs\/([^/]+)$/.exec(event.subject ?? "");
    if (!m?.[1] || !m[2]) {
      throw new BadEventError("subject must be the BackupJob's path, /apis/ros.io/v1/namespaces/<ns>/backupjobs/<name>", [{ path: "subject", message: "not a BackupJob path" }]);
    }
    const path = objectPath("BackupJob", m[2], m[1]);
    const bj = await getOrNull<{ status?: { phase?: string; progress?: unknown; conditions?: unknown } & { progressTime?: string } }>(api, path);
    // Progress never decides an outcome: a finished or failed BackupJob ignores it.
    if (!bj || isTerminal(bj.status?.phase) || bj.status?.phase === BackupJobPhase.NotStarted) {
      return { status: 200, body: { ignored: "no BackupJob in progress" } };
    }
    const last = lastProgressWrite.get(path) ?? 0;
    if (ctx.now().getTime() - last < PROGRESS_MIN_INTERVAL_MS) return { status: 200, body: { ignored: "throttled" } };
    lastProgressWrite.set(path, ctx.now().getTime());
    await api.patch(`${path}/status`, {
      status: {
        progress: {
          percent: Math.round(progress.percentDone * 1000) / 10,
          ...(progress.filesDone !== undefined ? { filesDone: progress.filesDone } : {}),
          ...(progress.totalFiles !== undefined ? { totalFiles: progress.totalFiles } : {}),
          ...(progress.bytesDone !== undefined ? { bytesDone: progress.bytesDone } : {}),
          ...(progress.totalBytes !== undefined ? { totalBytes: progress.totalBytes } : {}),
          ...(progress.secondsRemaining !== undefined ? { secondsRemaining: Math.round(progress.secondsRemaining) } : {}),
        },
      },
    });
    log.debug({ percent: progress.percentDone }, "Progress recorded");
    return { status: 200, body: { progress: true } };
  }
  // In-process throttle only: losing it when the function scales to zero costs one extra write, nothing more.
  const lastProgressWrite = new Map<string, number>();

  return {
    ctx,
    async handle(event, log) {
      switch (event.type) {
        case EventType.ResourceAdd:
        case EventType.ResourceUpdate:
        case EventType.ResourceDelete:
          return onApiServerEvent(event, log, false);
        case EventType.RefAdd:
        case EventType.RefUpdate:
        case EventType.RefDelete:
          return onApiServerEvent(event, log, true);
        case EventType.BackupRequested:
          return onBackupRequested(event, log);
        case EventType.RestoreRequested:
          return onRestoreRequested(event, log);
        case EventType.Resync:
        case EventType.Ping:
          return { status: 200, body: await resync({ ...ctx, log }) };
        case EventType.BackupProgress:
        case EventType.RestoreProgress:
          return onProgress(event, log);
        default:
          throw new BadEventError(`unknown event type ${event.type}`, [{ path: "type", message: "unknown" }]);
      }
    },
  };
}

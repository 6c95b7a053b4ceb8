// The application layer: what Walle does, whichever function asks. Reconcile a target one step (a BackupJob's
// step re-aggregates its BackupSet), route an ApiServerSource change to its target, request a backup or a
// restore, record a worker's progress, resync all in-flight work, and tick every schedule. Every function's `handle(context, event)`
// calls these; none of them knows HTTP or CloudEvents.
import type { Logger } from "pino";
import { z } from "zod";
import { BackupJobPhase } from "../api/backup-job.ts";
import { BackupRestorePhase } from "../api/backup-restore.ts";
import { API_VERSION, Label } from "../api/constants.ts";
import { backupJobReconciler, isTerminal } from "../core/backup-job.ts";
import { backupRestoreReconciler } from "../core/backup-restore.ts";
import { pendingBackupRequest } from "../core/backup-schedule.ts";
import { backupSetReconciler, isSettledSet } from "../core/backup-set.ts";
import { objectMetaSchema } from "../api/parse.ts";
import { objectSummarySchema, pvcSchema, statusSummarySchema } from "../core/objects.ts";
import {
  forcedBackupJob,
  forcedBackupRestore,
  isRefusal,
  progressStatus,
  type BackupRequest,
  type ProgressReport,
  type Refusal,
  type RestoreRequest,
} from "../core/requests.ts";
import { movesOwner, targetOf, updateMovesBackupJob, type EventObject, type Target } from "../core/routing.ts";
import { Throttle } from "../core/throttle.ts";
import { list, read } from "../k8s/actions.ts";
import { step, type ExecutorContext, type StepResult } from "../k8s/executor.ts";
import { collectionPath, isKnownKind, objectPath } from "../k8s/paths.ts";
import { isAlreadyExists, unlessConflict, type RestClient } from "../k8s/rest.ts";
import { endsMaintenance, planWake } from "../core/repository.ts";
import type { AppConfig } from "./config.ts";
import { boundPod, notTheWorker, type Access, type BoundPod } from "../core/access.ts";
import { DEFAULT_PROGRESS_AUDIENCE } from "../core/builders.ts";
import { reviewToken } from "../k8s/reviews.ts";
import { authenticate, authorize, type Authorized } from "./auth.ts";
import { BadEventError, ForbiddenError, NotFoundError, UnauthenticatedError, type Credentials } from "./events.ts";
import { execPermitted } from "../k8s/hooks.ts";
import { resync, type ResyncReport } from "./resync.ts";
import type { TickOptions, TickReport } from "./tick.ts";

export interface WalleOptions {
  readonly api: RestClient;
  readonly config: AppConfig;
  /** Events name this as their reporting controller, e.g. `ros.io/walle-reconcile`. */
  readonly controller: string;
  readonly now?: () => Date;
}

/** What ApiServerSource said changed: the object (Resource mode) or a reference to it (Reference mode). */
export type Change =
  | { readonly mode: "resource"; readonly change: ChangeType; readonly object: EventObject }
  | {
      readonly mode: "reference";
      readonly change: ChangeType;
      readonly ref: { readonly apiVersion: string; readonly kind: string; readonly name: string; readonly namespace?: string };
    };
export type ChangeType = "add" | "update" | "delete";

export interface Outcome {
  readonly target?: Target;
  /** Why nothing was done, when nothing was. */
  readonly ignored?: string;
  readonly step?: StepResult;
  /** BackupJobs waiting for a turn at a repository that were looked at again because a worker ended. */
  readonly woke?: number;
  /** What the run a BackupSchedule's ros.io/backup-requested annotation asked for made (`create BackupSet …`). */
  readonly ran?: readonly string[];
}

/** A worker, proved by its pod's projected token for the progress audience. */
export interface WorkerIdentity {
  readonly username: string;
  readonly bound: BoundPod;
}

export interface Walle {
  readonly config: AppConfig;
  reconcile(target: Target, log: Logger): Promise<StepResult>;
  changed(change: Change, log: Logger): Promise<Outcome>;
  requestBackup(req: BackupRequest, requestId: string, log: Logger): Promise<Requested>;
  requestRestore(req: RestoreRequest, requestId: string, log: Logger): Promise<Requested>;
  /** Who sent a trigger, by Kubernetes (auth.ts); throws 401. Called before the trigger's data is parsed. */
  authenticate(credentials: Credentials, what: string): Promise<Authorized>;
  /** Whether RBAC allows an authenticated caller all of `needs` (auth.ts); throws 403. */
  authorize(who: Authorized, what: string, needs: readonly Access[], log: Logger): Promise<Authorized>;
  /** The worker pod a progress report's token is bound to; throws 401 or 403. Called before the report is parsed. */
  authenticateWorker(credentials: Credentials, what: string): Promise<WorkerIdentity>;
  recordProgress(
    kind: "BackupJob" | "BackupRestore",
    at: { namespace: string; name: string },
    report: ProgressReport,
    worker: WorkerIdentity,
    log: Logger,
  ): Promise<{ recorded: boolean; ignored?: string }>;
  streamCommand(at: { namespace: string; name: string }, credentials: Credentials, log: Logger): Promise<CommandStream>;
  resync(log: Logger): Promise<ResyncReport>;
  /** Every schedule at the clock's time (or one schedule now, with `manual`), then the resync. */
  tick(opts: TickOptions, log: Logger): Promise<TickReport>;
}

/** A backup command's output, ready to run for its worker (Walle.streamCommand). */
export interface CommandStream {
  run(out: NodeJS.WritableStream, signal: AbortSignal): Promise<{ exitCode?: number; error?: string }>;
}

export interface Requested {
  readonly namespace: string;
  readonly name: string;
  readonly created: boolean;
  /** The phase after the first step, taken at once; undefined when another instance took it. */
  readonly phase?: string;
}

/**
 * A worker's progress more often than half its interval (WALLE_PROGRESS_INTERVAL_SECONDS, default 10 s) is not
 * written: a worker that reports faster than told costs status writes and shows nothing more.
 */
const progressMinIntervalMs = (config: { progressIntervalSeconds?: number }) => ((config.progressIntervalSeconds ?? 10) * 1000) / 2;
/** Runs whose last progress write is remembered; more than run at once on any cluster Walle serves. */
const PROGRESS_KEYS = 1_024;

export function createWalle(opts: WalleOptions): Walle {
  const { api, config } = opts;
  const now = opts.now ?? (() => new Date());
  const controller = { name: opts.controller, instance: config.instance };
  const ctx = (log: Logger): ExecutorContext => ({ api, config, log, now, controller });
  const progressThrottle = new Throttle(progressMinIntervalMs(config), PROGRESS_KEYS);

  /**
   * A worker has ended, so a repository may have room: the BackupJobs waiting longest for a turn are looked at
   * again (each decides for itself whether its repository has room now). Nothing else would prompt them until
   * the next tick.
   */
  async function wakeWaiting(log: Logger): Promise<number> {
    const waiting = planWake(await list(api, objectSummarySchema, collectionPath("BackupJob")), config.maxWorkersPerRepository);
    for (const w of waiting) await unlessConflict(step(ctx(log), backupJobReconciler, w.name, w.namespace));
    return waiting.length;
  }

  async function reconcile(target: Target, log: Logger): Promise<StepResult> {
    switch (target.kind) {
      case "BackupJob": {
        const r = await step(ctx(log), backupJobReconciler, target.name, target.namespace);
        // A BackupJob that moved changes its BackupSet's counts.
        const set = r.labels?.[Label.BackupSet];
        // A conflict there means another instance (the tick's resync, say) counted at the same moment, perhaps
        // before this change: count again from a fresh read, once; a second conflict means someone newer counted.
        if (set && r.changed) {
          const count = () => step(ctx(log), backupSetReconciler, set);
          const counted = (await unlessConflict(count())) ?? (await unlessConflict(count()));
          if (counted) await scheduleAfterRun(counted, log);
        }
        if (r.changed && isTerminal(r.phase)) await wakeWaiting(log);
        return r;
      }
      case "BackupSet": {
        const r = await step(ctx(log), backupSetReconciler, target.name);
        await scheduleAfterRun(r, log);
        return r;
      }
      case "BackupRestore":
        return step(ctx(log), backupRestoreReconciler, target.name, target.namespace);
    }
  }

  /**
   * A schedule's BackupSet that has just ended gives the schedule its state now (BackupReady, `state`), not at the
   * next tick: the same status the tick would write, from one read of the schedule's runs.
   */
  async function scheduleAfterRun(set: StepResult, log: Logger): Promise<void> {
    const schedule = set.labels?.[Label.BackupSchedule];
    if (!schedule || !set.changed || !isSettledSet({ state: set.phase })) return;
    await unlessConflict(tick({ schedule, settled: true }, log));
  }

  async function changed(change: Change, log: Logger): Promise<Outcome> {
    let obj: EventObject;
    if (change.mode === "reference") {
      const ref = change.ref;
      if (!isKnownKind(ref.kind)) return { ignored: `kind ${ref.kind} is not Walle's` };
      // Reference mode carries no labels: read the object to learn whose it is (gone: nothing left to do).
      const found = await read(api, objectSummarySchema, objectPath(ref.kind, ref.name, ref.namespace));
      if (!found) return { ignored: `${ref.kind} ${ref.namespace ?? ""}/${ref.name} no longer exists` };
      obj = { ...found, kind: ref.kind, apiVersion: ref.apiVersion, metadata: { ...found.metadata, name: found.metadata.name ?? ref.name } };
    } else {
      obj = change.object;
    }
    if (obj.kind === "BackupSchedule" && (obj.apiVersion === undefined || obj.apiVersion === API_VERSION)) return scheduleChanged(obj, change.change, log);
    const target = targetOf(obj);
    if (!target && endsMaintenance(obj))
      return { ignored: `${obj.kind} ${obj.metadata.name} is a schedule's; its end may free a repository`, woke: await wakeWaiting(log) };
    if (!target) return { ignored: `${obj.kind} ${obj.metadata.name} does not belong to a BackupJob or BackupSet` };
    if (target.kind !== obj.kind && !movesOwner(obj, change.change)) {
      return { target, ignored: `this change of ${obj.kind} ${obj.metadata.name} cannot move its owner on` };
    }
    // Only in Resource mode is the object the one the change wrote, so only there can an echo be told apart.
    if (change.mode === "resource" && change.change === "update" && !updateMovesBackupJob(obj)) {
      return { target, ignored: `this update of ${obj.kind} ${obj.metadata.name} cannot move it on` };
    }
    return { target, step: await reconcile(target, log) };
  }

  /**
   * The tick owns schedules, with one exception: a run someone asked for by annotating the schedule runs now, not
   * at the next tick. The event only prompts: the tick's own reads decide again whether a run is pending, and
   * whoever could write the annotation could as well have edited the schedule.
   */
  async function scheduleChanged(obj: EventObject, change: ChangeType, log: Logger): Promise<Outcome> {
    const name = obj.metadata.name;
    const ignored = { ignored: `BackupSchedule ${name} asks for no run now; the tick owns schedules` };
    if (change === "delete" || !pendingBackupRequest(obj)) return ignored;
    // One read says whether the API server agrees, before the tick's lists: an event claiming a request costs little.
    const current = await read(api, scheduleAskSchema, objectPath("BackupSchedule", name));
    if (!current || !pendingBackupRequest(current)) return ignored;
    const report = await tick({ schedule: name, requested: true }, log);
    log.info({ schedule: name, actions: report.actions.length }, `Ran BackupSchedule ${name} as its ros.io/backup-requested annotation asked`);
    return { ran: report.actions };
  }

  // Loaded when first asked: the reconcile function seldom ticks, and starts without the schedules' code.
  const tick = async (opts: TickOptions, log: Logger) => (await import("./tick.ts")).tick(ctx(log), opts);

  /** Creates what a request asked for (AlreadyExists: a retried delivery), then takes its first step at once. */
  async function create(made: ReturnType<typeof forcedBackupJob>, kind: "BackupJob" | "BackupRestore", log: Logger): Promise<Requested> {
    if (isRefusal(made)) throw refusal(made);
    const { name, namespace = "" } = made.metadata;
    const created = await api.create(collectionPath(kind, namespace), made).then(
      () => true,
      (e: unknown) => {
        if (isAlreadyExists(e)) return false;
        throw new Error(`create ${kind} ${namespace}/${name}`, { cause: e });
      },
    );
    log.info({ [kind === "BackupJob" ? "backupJob" : "backupRestore"]: `${namespace}/${name}`, created }, `${kind} ${namespace}/${name} requested by event`);
    // The object exists either way, so a conflict with an instance that the object's own event started does not
    // fail the request: that instance takes the step.
    const phase = (await unlessConflict(reconcile({ kind, namespace, name }, log)))?.phase;
    return { namespace, name, created, ...(phase ? { phase } : {}) };
  }

  async function requestBackup(req: BackupRequest, requestId: string, log: Logger): Promise<Requested> {
    const made = forcedBackupJob(req, requestId, config);
    if (!isRefusal(made) && !(await read(api, pvcSchema, objectPath("PersistentVolumeClaim", req.pvc, req.namespace)))) {
      throw new BadEventError(`PersistentVolumeClaim ${req.namespace}/${req.pvc} was not found`, [{ path: "data.pvc", message: "not found" }]);
    }
    return create(made, "BackupJob", log);
  }

  function requestRestore(req: RestoreRequest, requestId: string, log: Logger): Promise<Requested> {
    return create(forcedBackupRestore(req, requestId, config), "BackupRestore", log);
  }

  async function authorizeTrigger(who: Authorized, what: string, needs: readonly Access[], log: Logger): Promise<Authorized> {
    await authorize(api, who, what, needs);
    log.info({ caller: who.staticToken ? "the static trigger token" : who.caller.username }, `Authorized ${what}`);
    return who;
  }

  /** The worker pod a token for the progress audience is bound to: nobody else's token is taken. */
  async function authenticateWorker(credentials: Credentials, what: string): Promise<WorkerIdentity> {
    const audience = config.progressAudience ?? DEFAULT_PROGRESS_AUDIENCE;
    if (!credentials.bearer) throw new UnauthenticatedError(`${what} needs the worker pod's token for audience ${audience}`);
    const who = await reviewToken(api, credentials.bearer, [audience]);
    if ("refused" in who) throw new UnauthenticatedError(`The token for ${what} was not accepted for audience ${audience}: ${who.refused}`);
    const bound = boundPod(who.username, who.extra);
    if (!bound) throw new ForbiddenError(`${who.username} may not ask for ${what}: its token is bound to no pod`);
    return { username: who.username, bound };
  }

  /**
   * The run a worker speaks for, once its token proves it: one for the progress audience, bound to a pod that is
   * this run's worker (lib/core/access.ts notTheWorker). Anyone else gets 401 or 403. Undefined: no such run.
   */
  async function workerRun(kind: "BackupJob" | "BackupRestore", at: { namespace: string; name: string }, who: WorkerIdentity, what: string) {
    const { bound } = who;
    const path = objectPath(kind, at.name, at.namespace);
    const run = await read(api, runSchema, path);
    if (run) {
      const pod = await read(api, objectSummarySchema, objectPath("Pod", bound.name, bound.namespace));
      const why = notTheWorker(pod, bound, kind, { ...at, workerNamespace: run.spec?.repository?.namespace ?? config.installNamespace });
      if (why) throw new ForbiddenError(`${who.username} may not ask for ${what}: ${why}`);
    }
    return { run, path, bound };
  }

  /** A worker's progress, accepted only from the worker itself (workerRun); anyone else changes nothing. */
  async function recordProgress(
    kind: "BackupJob" | "BackupRestore",
    at: { namespace: string; name: string },
    report: ProgressReport,
    worker: WorkerIdentity,
    log: Logger,
  ) {
    const { run, path, bound } = await workerRun(kind, at, worker, "progress");
    // Progress never decides an outcome: a run that has ended, or not started, ignores it.
    const phase = run?.status?.phase;
    if (!run || isTerminal(phase) || phase === undefined || phase === BackupJobPhase.NotStarted || phase === BackupRestorePhase.NotStarted) {
      return { recorded: false, ignored: `no ${kind} in progress` };
    }
    if (!progressThrottle.allow(path, now().getTime())) return { recorded: false, ignored: "throttled" };
    await api.patch(`${path}/status`, { status: { progress: progressStatus(report) } });
    log.debug({ percent: report.percentDone, pod: `${bound.namespace}/${bound.name}` }, "Progress recorded");
    return { recorded: true };
  }

  /**
   * The output of a BackupJob's backup command, for its worker alone: the command runs in the application's
   * container (status.stream) by pods/exec, its stdout goes to `out` as it comes, and its end (exit code, stderr's
   * tail) comes back for the stream's trailer. Refused (401/403/404) before anything runs.
   */
  async function streamCommand(at: { namespace: string; name: string }, credentials: Credentials, log: Logger): Promise<CommandStream> {
    const what = "the backup command's output";
    const { run } = await workerRun("BackupJob", at, await authenticateWorker(credentials, what), what);
    const stream = run ? streamSchema.safeParse((run.status as { stream?: unknown } | undefined)?.stream).data : undefined;
    if (!run || !stream || isTerminal(run.status?.phase)) throw new NotFoundError(`BackupJob ${at.namespace}/${at.name} is backing up no command's output now`);
    return {
      async run(out, signal) {
        log.info({ pod: stream.pod, container: stream.container }, `Streaming the backup command's output from ${stream.pod}/${stream.container}`);
        const permit = { namespace: at.namespace, pod: stream.pod, container: stream.container, backupJob: at.name, command: stream.command };
        const r = await execPermitted(api, config.installNamespace, permit, config.workerDeadlineSeconds * 1000, log, { stdout: out, signal });
        return {
          ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
          ...(r.error || r.output ? { error: [r.error, r.output.trim()].filter(Boolean).join(": ") } : {}),
        };
      },
    };
  }

  return {
    config,
    reconcile,
    changed,
    streamCommand,
    requestBackup,
    requestRestore,
    authenticate: (credentials, what) => authenticate(api, credentials, config.tokenAudience, what),
    authorize: authorizeTrigger,
    authenticateWorker,
    recordProgress,
    resync: (log) => resync(ctx(log)),
    tick,
  };
}

function refusal(r: Refusal): BadEventError {
  return new BadEventError(r.refused, r.issues);
}

/** What a BackupJob's status says of its backup command (lib/api/backup-job.ts `stream`). */
const streamSchema = z.looseObject({ command: z.string(), pod: z.string(), container: z.string() });

/** A run as progress reads it: its phase, and its repository's namespace (where its workers run). */
const runSchema = objectSummarySchema.extend({
  spec: z
    .looseObject({ repository: z.looseObject({ namespace: z.string().optional() }).optional() })
    .optional()
    .catch(undefined),
});

/** Resource-mode data: the fields routing reads; the rest passes through. */
export const eventObjectSchema = objectSummarySchema.extend({
  apiVersion: z.string(),
  kind: z.string(),
  status: statusSummarySchema
    .extend({
      observedGeneration: z.number().optional(),
      readyToUse: z.boolean().optional(),
      ready: z.number().optional(),
      error: z.unknown().optional(),
      lastBackupRequest: z.looseObject({ id: z.string().optional() }).optional().catch(undefined),
    })
    .optional()
    .catch(undefined),
  metadata: objectMetaSchema.extend({ name: z.string() }),
});

/** A BackupSchedule as far as its ros.io/backup-requested annotation and the answer to it go. */
const scheduleAskSchema = objectSummarySchema.extend({
  status: z
    .looseObject({ lastBackupRequest: z.looseObject({ id: z.string().optional() }).optional().catch(undefined) })
    .optional()
    .catch(undefined),
});

/** Reference-mode data. */
export const eventRefSchema = z.object({ apiVersion: z.string(), kind: z.string(), name: z.string(), namespace: z.string().optional() });

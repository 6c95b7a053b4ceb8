// The one executor: it carries out what the pure core plans and decides, for any kind. For one object it reads
// what the kind's reconciler asks for (in rounds, independent reads in parallel), hands the world to `decide`,
// performs the actions, writes status once (with the resourceVersion it read as precondition), performs the
// clean-up that must follow that write, and records the Events. It decides nothing itself.
import type { Logger } from "pino";
import { z } from "zod";
import { API_VERSION } from "../api/constants.ts";
import { resourceSchemas } from "../api/parse.ts";
import type { WalleConfig } from "../core/builders.ts";
import type { Decision, Read, ReadPlan, Reconciler } from "../core/decision.ts";
import { objectSummarySchema, readSchemas } from "../core/objects.ts";
import { getOrNull, list, performAll, read as readObject, recordEvent, RefusedActionError, writeStatus } from "./actions.ts";
import { performHook } from "./hooks.ts";
import { collectionPath, objectPath } from "./paths.ts";
import type { RestClient } from "./rest.ts";

export interface ExecutorContext {
  readonly api: RestClient;
  readonly config: WalleConfig;
  readonly log: Logger;
  readonly now: () => Date;
  /** Who records the Events: `reportingController` and `reportingInstance`. */
  readonly controller: { readonly name: string; readonly instance: string };
}

export interface StepResult {
  readonly found: boolean;
  readonly phase?: string;
  /** Whether the status write changed the object. */
  readonly changed: boolean;
  /** Seconds until the object should be looked at again without an event (Decision.requeueAfter). */
  readonly requeueAfter?: number;
  readonly labels?: Readonly<Record<string, string>>;
  /** A snapshot hook ran: its end is in the status, and the next step decides on it (`step` takes it at once). */
  readonly ranHook?: boolean;
}

/** Rounds of reads before the executor gives up on a reconciler that keeps asking (a bug, never a cluster state). */
const MAX_READ_ROUNDS = 4;

type Kind = "BackupJob" | "BackupRestore" | "BackupSet" | "BackupSchedule";
type Walle = {
  metadata: { name?: string; namespace?: string; uid?: string; resourceVersion?: string; deletionTimestamp?: string; labels?: Record<string, string> };
  status?: unknown;
};

/**
 * One step of one object: observe → decide → act. Returns `found: false` when the object does not exist, and
 * leaves an object being deleted alone (its children go with it: the garbage collector, or the resync's sweep).
 */
export async function step<Obj extends Walle, Observed, World, Status extends { phase?: string; state?: string }>(
  ctx: ExecutorContext,
  reconciler: Reconciler<Obj, Observed, World, Status>,
  name: string,
  namespace?: string,
): Promise<StepResult> {
  const kind = reconciler.kind;
  const path = objectPath(kind, name, namespace);
  const raw = await getOrNull(ctx.api, path);
  if (raw === null) return { found: false, changed: false };
  const schema = resourceSchemas[kind] as unknown as z.ZodType<Obj>;
  const parsed = schema.safeParse(raw);
  const object = { kind, name, ...(namespace ? { namespace } : {}) };
  if (!parsed.success) {
    // Accepted by the API server, unreadable by Walle: the reconciler says what becomes of it.
    const { metadata, status } = readable<Status>(raw, kind);
    const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    const decision = reconciler.invalid(status, problems, ctx.now());
    ctx.log.warn({ problems }, `${kind} ${namespace ? `${namespace}/` : ""}${name} is invalid`);
    return apply(ctx, { ...object, ...metadata }, status, decision);
  }
  const obj = parsed.data;
  if (obj.metadata.deletionTimestamp) return { found: true, changed: false, phase: phaseOf(obj.status as Status | undefined) };
  const observed = await observe(ctx.api, (seen) => reconciler.reads(obj, seen, ctx.config));
  const decision = reconciler.decide(reconciler.world(obj, observed), ctx.config, ctx.now());
  const refused = reconciler.refused && ((status: Status, refusal: string) => reconciler.refused!(status, refusal, ctx.now()));
  const result = await apply(ctx, { ...object, ...obj.metadata }, (obj.status ?? {}) as Status, decision, refused);
  // What a hook did moves the object on now: the snapshot follows a before-hook at once, as little later as can be.
  if (result.ranHook) return step(ctx, reconciler, name, namespace);
  return { ...result, ...(obj.metadata.labels ? { labels: obj.metadata.labels } : {}) };
}

/** Reads in rounds until the plan asks for nothing new; each round's reads run in parallel. */
export async function observe<Observed>(api: RestClient, plan: (seen: Partial<Observed>) => ReadPlan<Observed>): Promise<Partial<Observed>> {
  const seen: Partial<Record<keyof Observed, unknown>> = {};
  for (let round = 0; round < MAX_READ_ROUNDS; round++) {
    const reads = (Object.entries(plan(seen as Partial<Observed>)) as [keyof Observed, Read | undefined][]).filter(
      (e): e is [keyof Observed, Read] => e[1] !== undefined && !(e[0] in seen),
    );
    if (reads.length === 0) return seen as Partial<Observed>;
    const values = await Promise.all(reads.map(([, read]) => perform(api, read)));
    reads.forEach(([key], i) => (seen[key] = values[i]));
  }
  throw new Error(`the read plan still asked for more after ${MAX_READ_ROUNDS} rounds`);
}

/**
 * One read, parsed with its kind's schema: what comes back from the API is input like any other. That the value
 * lands under a key of the world typed for that kind is the reconciler's promise; this is the one place it is kept.
 */
function perform(api: RestClient, read: Read): Promise<unknown> {
  if ("get" in read) return readObject(api, readSchemas[read.get], objectPath(read.get, read.name, read.namespace));
  // From the API server's cache (resourceVersion 0) when `cached`: a quorum read waits for the cache to catch up
  // with the latest write anywhere in the cluster, and classes change about never.
  const query = { ...(read.labelSelector ? { labelSelector: read.labelSelector } : {}), ...(read.cached ? { resourceVersion: "0" } : {}) };
  return list(api, read.unparsed ? z.unknown() : read.summary ? objectSummarySchema : readSchemas[read.list], collectionPath(read.list, read.namespace), query);
}

/** One of Walle's objects whose decision is carried out; resourceVersion is the precondition of the status write. */
export interface DecisionTarget {
  readonly kind: Kind;
  readonly name: string;
  readonly namespace?: string;
  readonly uid?: string;
  readonly resourceVersion?: string;
}

/**
 * Carries out a decision about one of Walle's objects: actions, one status write, the clean-up after it, Events.
 * When the API server refuses one of the actions for what it is, and the kind says what becomes of a refused
 * object (`refused`, for a run that has not ended), that decision is carried out instead: the actions done before
 * the refusal stay named in the status, so its clean-up finds them.
 */
export async function apply<S extends { phase?: string; state?: string }>(
  ctx: ExecutorContext,
  target: DecisionTarget,
  before: S,
  decision: Decision<S>,
  refused?: (status: S, refusal: string) => Decision<S> | undefined,
): Promise<StepResult> {
  const path = objectPath(target.kind, target.name, target.namespace);
  try {
    await performAll(ctx.api, decision.actions);
  } catch (err) {
    const instead = err instanceof RefusedActionError ? refused?.({ ...before, ...decision.status }, err.message) : undefined;
    if (!instead) throw err;
    ctx.log.warn({ err }, `${target.kind} ${target.namespace ? `${target.namespace}/` : ""}${target.name}: the API server refused an action`);
    return apply(ctx, target, before, instead);
  }
  const written = await writeStatus(ctx.api, path, before, decision.status, target.resourceVersion);
  let changed = written.changed;
  let status = decision.status;
  // The decision is stored: its Events now, before anything that follows it (a clean-up's CleanedUp, a hook's end)
  // can be seen, so whoever sees the object settled finds them. Cluster-scoped objects (BackupSets) get theirs in
  // the install namespace, where `kubectl events` finds them.
  const regarding = {
    apiVersion: API_VERSION,
    kind: target.kind,
    namespace: target.namespace ?? ctx.config.installNamespace,
    name: target.name,
    uid: target.uid,
  };
  for (const e of decision.events) await recordEvent(ctx.api, regarding, e, ctx.controller, ctx.now());
  // Its start is written (with the precondition: of two instances only one gets here), so its end will be looked for.
  if (decision.hook) await performHook(ctx.api, ctx.config.installNamespace, decision.hook, ctx.now, ctx.log);
  if (decision.then) {
    // Only now that the result is stored may what produced it go; then that is recorded too.
    await performAll(ctx.api, decision.then.actions);
    changed = (await writeStatus(ctx.api, path, status, decision.then.status, written.resourceVersion)).changed || changed;
    status = decision.then.status;
  }
  const from = phaseOf(before);
  const to = phaseOf(status);
  if (from !== to) {
    const where = target.namespace ? `${target.namespace}/${target.name}` : target.name;
    ctx.log.info(
      { from: from ?? "NotStarted", to, actions: decision.actions.length + (decision.then?.actions.length ?? 0) },
      `${target.kind} ${where} moved to ${to}`,
    );
  }
  return {
    found: true,
    changed,
    phase: to,
    ...(decision.requeueAfter !== undefined ? { requeueAfter: decision.requeueAfter } : {}),
    ...(decision.hook ? { ranHook: true } : {}),
  };
}

/** Walle's kinds say where they are by `phase`, BackupSets by `state`. */
const phaseOf = (status: { phase?: string; state?: string } | undefined): string | undefined => status?.phase ?? status?.state;

/** What can be read of an object that failed to parse as a whole. */
const rawSchema = z.looseObject({
  metadata: z.looseObject({ uid: z.string().optional(), resourceVersion: z.string().optional() }).optional().catch(undefined),
  status: z.unknown(),
});

/** What an object that failed to parse as a whole still says: its uid and resourceVersion, and its status if that parses. */
function readable<S>(raw: unknown, kind: Kind): { metadata: { uid?: string; resourceVersion?: string }; status: S } {
  const parts = rawSchema.safeParse(raw).data;
  const status = resourceSchemas[kind].shape.status.safeParse(parts?.status);
  return { metadata: parts?.metadata ?? {}, status: (status.success ? (status.data ?? {}) : {}) as S };
}

// The executor's hands: reads parsed at the boundary, the core's actions, the one status write, and Kubernetes
// Events. Creates meet AlreadyExists and deletes meet NotFound without complaint, so every step is idempotent.
import { randomBytes } from "node:crypto";
import { z } from "zod";
import type { Manifest } from "../core/builders.ts";
import type { Action, KubeEvent, ObjectRef } from "../core/decision.ts";
import { collectionPath, isKnownKind, objectPath, type KindName } from "./paths.ts";
import { ApiError, isAlreadyExists, isNamespaceTerminating, isNotFound, type RestClient } from "./rest.ts";

/**
 * A create or patch the API server refused for what it is (403 Forbidden: an admission policy, RBAC, a quota; 422
 * Invalid), not for a state that passes: trying it again changes nothing until someone changes the policy or the
 * object. A refused delete stays an error of the step: it makes nothing, and the step is tried again.
 */
export class RefusedActionError extends Error {
  override name = "RefusedActionError";
}

/** The error an action failed with: refused, in the API server's words, or as it was. */
function actionError(what: string, e: unknown): Error {
  if (e instanceof ApiError && (e.code === 403 || e.code === 422)) return new RefusedActionError(`${what}: ${e.message}`, { cause: e });
  return new Error(what, { cause: e });
}

function kindOf(kind: string): KindName {
  if (!isKnownKind(kind)) throw new Error(`Walle does not manage objects of kind ${kind}`);
  return kind;
}

/** GET, or null when the object does not exist. The value is unknown until a schema has parsed it. */
export async function getOrNull(api: RestClient, path: string): Promise<unknown> {
  try {
    return await api.get<unknown>(path);
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
}

/** GET and parse, or null when the object does not exist. */
export async function read<S extends z.ZodType>(api: RestClient, schema: S, path: string): Promise<z.output<S> | null> {
  const raw = await getOrNull(api, path);
  return raw === null ? null : schema.parse(raw);
}

const listSchema = z.object({ items: z.array(z.unknown()) });

/** LIST and parse each item. */
export async function list<S extends z.ZodType>(
  api: RestClient,
  schema: S,
  path: string,
  query: Readonly<Record<string, string>> = {},
): Promise<z.output<S>[]> {
  const res = listSchema.parse(await api.get<unknown>(path, query));
  return res.items.map((i) => schema.parse(i));
}

export function pathOf(ref: ObjectRef): string {
  return objectPath(kindOf(ref.kind), ref.name, ref.namespace);
}

const uidSchema = z.object({ metadata: z.object({ uid: z.string() }) });
const refKey = (r: { kind: string; namespace?: string; name: string }) => `${r.kind}/${r.namespace ?? ""}/${r.name}`;

/** The uids of objects created (or found existing) so far in one performAll, for `ownedBy`. */
type Uids = Map<string, string>;

export async function perform(api: RestClient, action: Action, uids: Uids = new Map()): Promise<void> {
  switch (action.op) {
    case "create": {
      const m = action.ownedBy ? await withOwner(api, action.manifest, action.ownedBy, uids) : action.manifest;
      const created = await api.create<unknown>(collectionPath(kindOf(m.kind), m.metadata.namespace), m).catch((e: unknown) => {
        // A namespace being deleted takes everything in it: what would be made there would go at once.
        if (!isAlreadyExists(e) && !isNamespaceTerminating(e)) throw actionError(`create ${m.kind} ${m.metadata.namespace ?? ""}/${m.metadata.name}`, e);
        return undefined;
      });
      const uid = uidSchema.safeParse(created).data?.metadata.uid;
      if (uid) uids.set(refKey({ kind: m.kind, namespace: m.metadata.namespace, name: m.metadata.name }), uid);
      return;
    }
    case "patch":
      await api.patch(pathOf(action.target), action.patch).catch((e: unknown) => {
        if (!isNotFound(e)) throw actionError(`patch ${action.target.kind} ${action.target.name}`, e);
      });
      return;
    case "delete":
      await api.delete(pathOf(action.target), { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Background" }).catch((e: unknown) => {
        if (!isNotFound(e)) throw new Error(`delete ${action.target.kind} ${action.target.name}`, { cause: e });
      });
      return;
    default: {
      const never: never = action;
      throw new Error(`unknown action ${JSON.stringify(never)}`);
    }
  }
}

export async function performAll(api: RestClient, actions: readonly Action[]): Promise<void> {
  const uids: Uids = new Map();
  for (const a of actions) await perform(api, a, uids);
}

/** The manifest with its controlling owner's uid: from this decision's creates, or read when it already existed. */
async function withOwner(api: RestClient, manifest: Manifest, owner: ObjectRef, uids: Uids): Promise<Manifest> {
  let uid = uids.get(refKey(owner));
  if (!uid) {
    const found = await read(api, uidSchema, pathOf(owner));
    if (!found) throw new Error(`create ${manifest.kind} ${manifest.metadata.name}: its owner ${owner.kind} ${owner.name} does not exist`);
    uid = found.metadata.uid;
    uids.set(refKey(owner), uid);
  }
  const ref = { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid, controller: true, blockOwnerDeletion: true };
  return { ...manifest, metadata: { ...manifest.metadata, ownerReferences: [ref] } };
}

/**
 * A JSON merge patch from `before` to `after`: changed and new fields, and null for fields that went away, so
 * one PATCH of /status writes the whole new status without a read-modify-write conflict.
 */
export function mergePatch(before: unknown, after: unknown): unknown {
  if (!isPlainObject(before) || !isPlainObject(after)) return after === undefined ? null : after;
  const out: Record<string, unknown> = {};
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const a = before[key];
    const b = after[key];
    if (b === undefined) {
      if (a !== undefined) out[key] = null;
    } else if (JSON.stringify(a) !== JSON.stringify(b)) {
      out[key] = isPlainObject(a) && isPlainObject(b) ? mergePatch(a, b) : b;
    }
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Writes status with one merge patch when it changed; returns whether it wrote, and the resourceVersion the
 * object has now. The resourceVersion read with `before` is a precondition: when another instance (the function
 * scales out, and the tick resyncs) moved the object on meanwhile, the API server answers 409 and this stale
 * decision is dropped, to be made again on fresh state when the event is retried.
 */
export async function writeStatus(
  api: RestClient,
  path: string,
  before: unknown,
  after: unknown,
  resourceVersion?: string,
): Promise<{ changed: boolean; resourceVersion?: string }> {
  const patch = mergePatch(before ?? {}, after);
  if (isPlainObject(patch) && Object.keys(patch).length === 0) return { changed: false, ...(resourceVersion ? { resourceVersion } : {}) };
  const written = writtenSchema.safeParse(
    await api.patch<unknown>(`${path}/status`, { ...(resourceVersion ? { metadata: { resourceVersion } } : {}), status: patch }),
  );
  const version = written.data?.metadata.resourceVersion;
  return { changed: true, ...(version ? { resourceVersion: version } : {}) };
}

const writtenSchema = z.object({ metadata: z.object({ resourceVersion: z.string() }) });

export interface Regarding {
  readonly apiVersion: string;
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
  readonly uid?: string;
}

/** Records an events.k8s.io/v1 Event about an object, as `kubectl describe` and `kubectl events` show them. */
export async function recordEvent(
  api: RestClient,
  regarding: Regarding,
  event: KubeEvent,
  controller: { name: string; instance: string },
  now: Date,
): Promise<void> {
  const namespace = regarding.namespace ?? "default";
  await api
    .create(collectionPath("Event", namespace), {
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      metadata: { name: `${regarding.name}.${randomBytes(8).toString("hex")}`, namespace },
      eventTime: now.toISOString().replace(/Z$/, "000Z"),
      reportingController: controller.name,
      reportingInstance: controller.instance,
      action: event.reason,
      reason: event.reason,
      type: event.type,
      note: event.note.slice(0, 1024),
      regarding,
    })
    .catch((e: unknown) => {
      if (!isNamespaceTerminating(e)) throw e;
    });
}

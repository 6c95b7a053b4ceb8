// A local stand-in for Knative's ApiServerSource, for tests and `npm start`. It reads the real manifest
// (knative/apiserversource.yaml), watches the same resources, and POSTs the same binary-mode CloudEvents the
// way knative/eventing's adapter (pkg/adapter/apiserver, v0.49) does, including what makes it lossy (DESIGN §4):
//
// - nothing for the objects that exist when it starts: the reflector's initial list goes to Replace, a no-op;
// - one sender per watched resource, so the events of one resource go out in order, one at a time;
// - a fresh UUID per event, `source` the API server's URL, the subject from `createSelfLink`;
// - up to 5 retries over about 3 s, only on 404/413/425/429/502/503/504 or a transport error, then dropped;
// - `spec.owner` keeps only objects whose controller ownerReference matches.
//
// One difference: when a watch expires and the resource is listed again, the adapter sends nothing for what
// changed in between, and this source sends those changes. It only ever sends more, never less.
import { selectorString } from "../lib/core/selectors.ts";
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { Informer, type ChangeType, type KubeObject } from "../lib/k8s/informer.ts";
import { ApiError, type RestClient } from "../lib/k8s/rest.ts";
import { repoRoot } from "./toolchain.ts";

export const defaultManifest = path.join(repoRoot, "knative", "apiserversource.yaml");

export const EventMode = { Resource: "Resource", Reference: "Reference" } as const;
export type EventMode = (typeof EventMode)[keyof typeof EventMode];

export interface EventSourceOptions {
  readonly api: RestClient;
  /** The URL events are POSTed to (the manifest's sink is a Knative Service, which does not exist locally). */
  readonly sink: string;
  /** The ApiServerSource manifest. Default: knative/apiserversource.yaml. */
  readonly manifest?: string;
  /** Overrides the manifest's spec.mode. */
  readonly mode?: EventMode;
  readonly log?: Logger;
}

export interface EventSource {
  /** Events the sink acknowledged (2xx). */
  readonly sent: number;
  /** Events given up on after the retries, as the adapter drops them. */
  readonly failed: number;
  /** The collection paths it watches. */
  readonly watching: readonly string[];
  /** Resources of the manifest the API server does not serve, as `apiVersion kind`. */
  readonly skipped: readonly string[];
  /** Stops watching and abandons the sends in flight. */
  stop(): Promise<void>;
}

// ---- The manifest

const labelSelectorSchema = z.object({
  matchLabels: z.record(z.string(), z.string()).optional(),
  matchExpressions: z
    .array(z.object({ key: z.string(), operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]), values: z.array(z.string()).optional() }))
    .optional(),
});
type LabelSelector = z.infer<typeof labelSelectorSchema>;

// The fields of sources.knative.dev/v1 ApiServerSource that decide what is watched and sent.
const manifestSchema = z.object({
  apiVersion: z.literal("sources.knative.dev/v1"),
  kind: z.literal("ApiServerSource"),
  metadata: z.object({ name: z.string(), namespace: z.string().default("default") }),
  spec: z.object({
    // Knative defaults the mode to Reference.
    mode: z.enum([EventMode.Resource, EventMode.Reference]).default(EventMode.Reference),
    resources: z.array(z.object({ apiVersion: z.string(), kind: z.string(), selector: labelSelectorSchema.optional() })).min(1),
    owner: z.object({ apiVersion: z.string().optional(), kind: z.string().optional() }).optional(),
    namespaceSelector: labelSelectorSchema.optional(),
    ceOverrides: z.object({ extensions: z.record(z.string(), z.string()).optional() }).optional(),
  }),
});
export type ApiServerSourceManifest = z.infer<typeof manifestSchema>;
type ResourceSpec = ApiServerSourceManifest["spec"]["resources"][number];
type OwnerSpec = NonNullable<ApiServerSourceManifest["spec"]["owner"]>;

export async function readManifest(file: string): Promise<ApiServerSourceManifest> {
  const parsed = manifestSchema.safeParse(parseYaml(await readFile(file, "utf8")));
  if (parsed.success) return parsed.data;
  throw new Error(`${file} is not an ApiServerSource the local event source understands:\n${z.prettifyError(parsed.error)}`);
}

const isEmptySelector = (s: LabelSelector): boolean => selectorString(s) === "";

// ---- The CloudEvents

/** The resource name the adapter puts in a subject: meta.UnsafeGuessKindToResource, not discovery. */
export function guessPlural(kind: string): string {
  const singular = kind.toLowerCase();
  if (singular.endsWith("endpoints")) return singular;
  if (singular.endsWith("s")) return `${singular}es`;
  if (singular.endsWith("y")) return `${singular.slice(0, -1)}ies`;
  return `${singular}s`;
}

/**
 * The adapter's `createSelfLink`: `/apis/<apiVersion>/namespaces/<ns>/<plural>/<name>`, with `/apis/v1/…` for
 * the core group (not the API's `/api/v1/…`) and an empty namespace segment for cluster-scoped objects.
 */
export function subjectOf(apiVersion: string, kind: string, namespace: string, name: string): string {
  const version = apiVersion.includes(".") && !apiVersion.includes("/") ? `${apiVersion}/versionUnknown` : apiVersion;
  return `/apis/${version}/namespaces/${namespace}/${guessPlural(kind)}/${name}`;
}

export interface OutgoingEvent {
  readonly id: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export interface EventContext {
  readonly mode: EventMode;
  /** The API server's URL: the adapter's `source`. */
  readonly source: string;
  readonly extensions?: Readonly<Record<string, string>>;
}

/** One change as the adapter sends it in HTTP binary mode. */
export function buildEvent(change: ChangeType, obj: KubeObject, ctx: EventContext, now = new Date()): OutgoingEvent {
  const apiVersion = obj.apiVersion ?? "";
  const kind = obj.kind ?? "";
  const { name } = obj.metadata;
  const namespace = obj.metadata.namespace ?? "";
  const id = randomUUID();
  // corev1.ObjectReference, whose empty fields are omitted.
  const data = ctx.mode === EventMode.Reference ? { kind, ...(namespace ? { namespace } : {}), name, apiVersion } : obj;
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "ce-specversion": "1.0",
    "ce-id": id,
    "ce-source": ctx.source,
    "ce-type": `dev.knative.apiserver.${ctx.mode === EventMode.Reference ? "ref" : "resource"}.${change}`,
    "ce-subject": subjectOf(apiVersion, kind, namespace, name),
    "ce-time": now.toISOString(),
    "ce-kind": kind,
    "ce-apiversion": apiVersion,
    "ce-name": name,
    "ce-namespace": namespace,
  };
  // ceOverrides are applied last, as the adapter's client does, so they can replace the extensions above.
  for (const [key, value] of Object.entries(ctx.extensions ?? {})) headers[`ce-${key.toLowerCase()}`] = value;
  return { id, headers, body: JSON.stringify(data) };
}

/** The adapter's controllerFilter: only objects whose controller ownerReference matches `owner`. */
export function ownedBy(obj: KubeObject, owner: OwnerSpec | undefined): boolean {
  if (!owner) return true;
  const controller = obj.metadata.ownerReferences?.find((ref) => ref.controller === true);
  if (!controller) return false;
  return (!owner.apiVersion || owner.apiVersion === controller.apiVersion) && (!owner.kind || owner.kind === controller.kind);
}

// ---- Delivery

// sdk-go's default isRetriable, and the backoff the adapter asks for (exponential from 50 ms, 5 retries): the
// n-th retry waits 50 ms × 2^n, so 100, 200, 400, 800 and 1,600 ms, about 3 s in all.
const retriableStatuses = new Set([404, 413, 425, 429, 502, 503, 504]);
export const retryDelaysMs: readonly number[] = [100, 200, 400, 800, 1600];
const attemptTimeoutMs = 30_000;

type Attempt = { readonly ok: true; readonly status: number } | { readonly ok: false; readonly retriable: boolean; readonly reason: string };

async function attempt(sink: string, event: OutgoingEvent, stop: AbortSignal): Promise<Attempt> {
  try {
    const res = await fetch(sink, {
      method: "POST",
      headers: event.headers,
      body: event.body,
      signal: AbortSignal.any([stop, AbortSignal.timeout(attemptTimeoutMs)]),
    });
    const text = await res.text();
    if (res.ok) return { ok: true, status: res.status };
    return { ok: false, retriable: retriableStatuses.has(res.status), reason: `${res.status} ${text.slice(0, 300)}` };
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : "";
    return { ok: false, retriable: !stop.aborted, reason: `${(err as Error).message}${cause}` };
  }
}

/** Sends one event with the adapter's retries; resolves with the last attempt. */
async function deliver(sink: string, event: OutgoingEvent, stop: AbortSignal): Promise<Attempt> {
  for (let retry = 0; ; retry++) {
    const result = await attempt(sink, event, stop);
    const delay = retryDelaysMs[retry];
    if (result.ok || !result.retriable || delay === undefined) return result;
    try {
      await sleep(delay, undefined, { signal: stop });
    } catch {
      return { ok: false, retriable: false, reason: "the event source stopped" };
    }
  }
}

// ---- Watching

interface WatchTarget {
  readonly resource: ResourceSpec;
  /** Collection path: all namespaces, one namespace, or cluster-scoped. */
  readonly path: string;
}

interface ApiResourceList {
  resources: { name: string; kind: string; namespaced: boolean }[];
}

const groupVersionPath = (apiVersion: string): string => (apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`);

/** The kind's resource by discovery, or undefined when the API server does not serve it. */
async function discover(api: RestClient, resource: ResourceSpec): Promise<{ plural: string; namespaced: boolean } | undefined> {
  let list: ApiResourceList;
  try {
    list = await api.get<ApiResourceList>(groupVersionPath(resource.apiVersion));
  } catch (err) {
    if (err instanceof ApiError && err.code === 404) return undefined;
    throw err;
  }
  const found = list.resources.find((r) => r.kind === resource.kind && !r.name.includes("/"));
  return found && { plural: found.name, namespaced: found.namespaced };
}

/** The namespaces to watch, or "all": the reconciler's rules for spec.namespaceSelector. */
async function watchedNamespaces(api: RestClient, manifest: ApiServerSourceManifest): Promise<readonly string[] | "all"> {
  const selector = manifest.spec.namespaceSelector;
  if (!selector) return [manifest.metadata.namespace];
  if (isEmptySelector(selector)) return "all";
  const list = await api.get<{ items: KubeObject[] }>("/api/v1/namespaces", { labelSelector: selectorString(selector) });
  return list.items.map((ns) => ns.metadata.name);
}

async function watchTargets(api: RestClient, manifest: ApiServerSourceManifest, log: Logger | undefined): Promise<{ targets: WatchTarget[]; skipped: string[] }> {
  const namespaces = await watchedNamespaces(api, manifest);
  const targets: WatchTarget[] = [];
  const skipped: string[] = [];
  for (const resource of manifest.spec.resources) {
    const found = await discover(api, resource);
    if (!found) {
      // The adapter in its default (resilient) mode logs and carries on without it, and so does this.
      log?.warn({ apiVersion: resource.apiVersion, kind: resource.kind }, "Skipped a resource the API server does not serve");
      skipped.push(`${resource.apiVersion} ${resource.kind}`);
      continue;
    }
    const base = groupVersionPath(resource.apiVersion);
    if (!found.namespaced || namespaces === "all") targets.push({ resource, path: `${base}/${found.plural}` });
    else for (const ns of namespaces) targets.push({ resource, path: `${base}/namespaces/${ns}/${found.plural}` });
  }
  return { targets, skipped };
}

export async function startEventSource(opts: EventSourceOptions): Promise<EventSource> {
  const { api, sink, log } = opts;
  const manifest = await readManifest(opts.manifest ?? defaultManifest);
  const ctx: EventContext = { mode: opts.mode ?? manifest.spec.mode, source: api.creds.server, extensions: manifest.spec.ceOverrides?.extensions };
  const { targets, skipped } = await watchTargets(api, manifest, log);
  const stopping = new AbortController();
  const counts = { sent: 0, failed: 0 };
  const queues: Promise<void>[] = targets.map(() => Promise.resolve());
  const informers: Informer<KubeObject>[] = [];

  const send = async (change: ChangeType, obj: KubeObject, target: WatchTarget): Promise<void> => {
    if (stopping.signal.aborted) return;
    // List items of built-in kinds come without apiVersion and kind; the adapter's dynamic client fills them in.
    const full: KubeObject = { ...obj, apiVersion: obj.apiVersion ?? target.resource.apiVersion, kind: obj.kind ?? target.resource.kind };
    const event = buildEvent(change, full, ctx);
    const result = await deliver(sink, event, stopping.signal);
    const fields = { ceId: event.id, ceType: event.headers["ce-type"], subject: event.headers["ce-subject"] };
    if (result.ok) {
      counts.sent++;
      log?.debug({ ...fields, status: result.status }, "Sent CloudEvent");
    } else if (!stopping.signal.aborted) {
      counts.failed++;
      log?.error({ ...fields, reason: result.reason }, "Failed to send CloudEvent; dropped it");
    }
  };

  try {
    for (const [i, target] of targets.entries()) {
      let synced = false;
      const informer = new Informer<KubeObject>(
        api,
        target.path,
        (change, obj) => {
          // The initial list is not news: the adapter sends nothing for objects that existed before it started.
          if (!synced || !ownedBy(obj, manifest.spec.owner)) return;
          // Chained, so one resource's events go out in order, as from the adapter's one reflector per resource.
          queues[i] = (queues[i] ?? Promise.resolve())
            .then(() => send(change, obj, target))
            .catch((err: unknown) => log?.error({ err, path: target.path }, "Failed to send CloudEvent"));
        },
        { labelSelector: selectorString(target.resource.selector) },
        (err) => log?.debug({ path: target.path, err }, "Failed to watch; retrying"),
      );
      informers.push(informer);
      await informer.start();
      // Watch events arrive as I/O callbacks, which run only after this continuation: none is missed.
      synced = true;
    }
  } catch (err) {
    for (const informer of informers) informer.stop();
    throw new Error("start the local event source", { cause: err });
  }
  log?.info({ sink, mode: ctx.mode, watching: targets.map((t) => t.path), skipped }, "Started local event source");

  return {
    get sent() {
      return counts.sent;
    },
    get failed() {
      return counts.failed;
    },
    watching: targets.map((t) => t.path),
    skipped,
    async stop() {
      stopping.abort();
      for (const informer of informers) informer.stop();
      await Promise.all(queues);
    },
  };
}

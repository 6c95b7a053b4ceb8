// The local cluster's event source: Knative Eventing's own ApiServerSource receive adapter (knative.dev/eventing
// v0.50.0, cmd/apiserver_receive_adapter, built by the toolchain), configured the way Knative's controller configures
// the adapter's pod (pkg/reconciler/apiserversource/resources/receive_adapter.go) from the real manifest,
// knative/apiserversource.yaml, so what runs locally cannot drift from what is deployed. It runs as the
// manifest's service account (walle-apiserversource), with a TokenRequest token, so its RBAC is what it is deployed with.
//
// What makes it lossy is the adapter's own (docs/architecture.md, Events): nothing for objects that exist when it starts or when a watch
// is listed again, about 3 s of retries on 404/413/425/429/502/503/504 or a transport error, then the event is dropped.
//
// Its health probes bind :8080 on every interface, a port the adapter does not let anyone move
// (knative.dev/pkg injection.HealthCheckDefaultPort); when the port is taken it carries on without them, silently. So
// the port is checked first, and a taken one fails the start with a message that says so. Profiling goes to a free port.
import { once } from "node:events";
import { mkdir, readFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import type { Logger } from "pino";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { INSTALL_NAMESPACE } from "../lib/api/constants.ts";
import { selectorString } from "../lib/core/selectors.ts";
import type { RestClient } from "../lib/k8s/rest.ts";
import { serviceAccountKubeconfig } from "./index.ts";
import { startProcess, tail, waitUntil, type Managed } from "./processes.ts";
import { repoRoot, resolveBinary } from "./toolchain.ts";

export const defaultManifest = path.join(repoRoot, "knative", "apiserversource.yaml");

export const EventMode = { Resource: "Resource", Reference: "Reference" } as const;
export type EventMode = (typeof EventMode)[keyof typeof EventMode];

/** The port the adapter's health probes bind, on every interface; it cannot be changed. */
export const ADAPTER_HEALTH_PORT = 8080;

export interface EventSourceOptions {
  /** An admin client: it mints the source's service-account token and lists namespaces for a namespace selector. */
  readonly api: RestClient;
  /** Where kubeconfigs and the adapter's log go. */
  readonly stateDir: string;
  /** The URL events are POSTed to (the manifest's sink is a Knative Service, which does not exist locally). */
  readonly sink: string;
  /** The ApiServerSource manifest. Default: knative/apiserversource.yaml. */
  readonly manifest?: string;
  /** Overrides the manifest's spec.mode. */
  readonly mode?: EventMode;
  readonly log?: Logger;
}

export interface EventSource {
  /** The adapter's watches, as its reflectors name them: `batch/v1, Resource=jobs`, with `/<namespace>` when it watches a few. */
  readonly watching: readonly string[];
  /** Events the adapter gave up on after its retries, counted from its log. */
  failed(): Promise<number>;
  /** The adapter's log. */
  readonly logFile: string;
  /** Stops the adapter (SIGTERM, as the kubelet stops its pod). */
  stop(): Promise<void>;
}

// ---- The manifest

const labelSelectorSchema = z.object({
  matchLabels: z.record(z.string(), z.string()).optional(),
  matchExpressions: z
    .array(z.object({ key: z.string(), operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]), values: z.array(z.string()).optional() }))
    .optional(),
});

// The fields of sources.knative.dev/v1 ApiServerSource that decide what is watched and sent.
const manifestSchema = z.object({
  apiVersion: z.literal("sources.knative.dev/v1"),
  kind: z.literal("ApiServerSource"),
  metadata: z.object({ name: z.string(), namespace: z.string().default("default") }),
  spec: z.object({
    // Knative's webhook defaults the mode to Reference; the adapter itself would take a missing mode as Resource.
    mode: z.enum([EventMode.Resource, EventMode.Reference]).default(EventMode.Reference),
    serviceAccountName: z.string().default("default"),
    resources: z.array(z.object({ apiVersion: z.string(), kind: z.string(), selector: labelSelectorSchema.optional() })).min(1),
    owner: z.object({ apiVersion: z.string().optional(), kind: z.string().optional() }).optional(),
    namespaceSelector: labelSelectorSchema.optional(),
    ceOverrides: z.object({ extensions: z.record(z.string(), z.string()).optional() }).optional(),
  }),
});
export type ApiServerSourceManifest = z.infer<typeof manifestSchema>;

export async function readManifest(file: string): Promise<ApiServerSourceManifest> {
  const parsed = manifestSchema.safeParse(parseYaml(await readFile(file, "utf8")));
  if (parsed.success) return parsed.data;
  throw new Error(`${file} is not an ApiServerSource the local cluster can configure an adapter from:\n${z.prettifyError(parsed.error)}`);
}

/** The resource name Knative's controller gives the adapter: meta.UnsafeGuessKindToResource, not discovery. */
export function guessPlural(kind: string): string {
  const singular = kind.toLowerCase();
  if (singular.endsWith("endpoints")) return singular;
  if (singular.endsWith("s")) return `${singular}es`;
  if (singular.endsWith("y")) return `${singular.slice(0, -1)}ies`;
  return `${singular}s`;
}

/** The adapter's K_SOURCE_CONFIG (pkg/adapter/apiserver/config.go), as Knative's controller writes it. */
export interface SourceConfig {
  readonly namespaces: readonly string[];
  readonly allNamespaces: boolean;
  readonly resources: readonly { readonly gvr: { readonly Group: string; readonly Version: string; readonly Resource: string }; readonly selector?: string }[];
  readonly owner?: { readonly apiVersion?: string; readonly kind?: string };
  readonly mode: EventMode;
}

/**
 * The controller's rules for spec.namespaceSelector: none means the source's own namespace, an empty one every
 * namespace, any other the namespaces it selects now.
 */
export async function sourceConfig(api: RestClient, manifest: ApiServerSourceManifest, mode: EventMode): Promise<SourceConfig> {
  const selector = manifest.spec.namespaceSelector;
  const all = selector !== undefined && selectorString(selector) === "";
  const namespaces = !selector
    ? [manifest.metadata.namespace]
    : (await api.get<{ items: { metadata: { name: string } }[] }>("/api/v1/namespaces", all ? undefined : { labelSelector: selectorString(selector) })).items
        .map((n) => n.metadata.name)
        .sort();
  return {
    namespaces,
    allNamespaces: all,
    resources: manifest.spec.resources.map((r) => {
      const [group, version] = r.apiVersion.includes("/") ? r.apiVersion.split("/") : ["", r.apiVersion];
      const labels = r.selector ? selectorString(r.selector) : "";
      return { gvr: { Group: group ?? "", Version: version ?? "", Resource: guessPlural(r.kind) }, ...(labels ? { selector: labels } : {}) };
    }),
    ...(manifest.spec.owner ? { owner: manifest.spec.owner } : {}),
    mode,
  };
}

// ---- The adapter

async function portIsFree(port: number): Promise<boolean> {
  const server = net.createServer();
  server.listen(port);
  try {
    await Promise.race([once(server, "listening"), once(server, "error").then(([err]) => Promise.reject(err as Error))]);
    return true;
  } catch {
    return false;
  } finally {
    server.close();
  }
}

/**
 * How many watches the adapter starts (pkg/adapter/apiserver/adapter.go): one per resource that is cluster-scoped or
 * watched in every namespace, else one per resource and namespace. A group/version the API server does not serve
 * makes the adapter exit, which the wait reports.
 */
async function reflectorCount(api: RestClient, config: SourceConfig): Promise<number> {
  let count = 0;
  for (const { gvr } of config.resources) {
    const discovery = await api
      .get<{ resources: { name: string; namespaced: boolean }[] }>(gvr.Group ? `/apis/${gvr.Group}/${gvr.Version}` : `/api/${gvr.Version}`)
      .catch(() => ({ resources: [] }));
    const found = discovery.resources.find((r) => r.name === gvr.Resource);
    if (!found) continue; // skipped by the adapter, or fatal to it
    count += found.namespaced && !config.allNamespaces ? config.namespaces.length : 1;
  }
  return count;
}

/** The reflectors' names in the adapter's klog lines: `"Caches populated" … reflector="<gvr>"`. */
const cachesPopulated = /"Caches populated"[^\n]*?reflector="([^"]+)"/g;
const failedSend = /failed to send cloudevent/g;

let started = 0;

export async function startEventSource(opts: EventSourceOptions): Promise<EventSource> {
  const { api, sink, log } = opts;
  const manifest = await readManifest(opts.manifest ?? defaultManifest);
  const config = await sourceConfig(api, manifest, opts.mode ?? manifest.spec.mode);
  if (!(await portIsFree(ADAPTER_HEALTH_PORT))) {
    throw new Error(
      `port ${ADAPTER_HEALTH_PORT} is taken: Knative's ApiServerSource adapter binds its health probes there, on every ` +
        "interface, and the port cannot be moved. Stop what listens on it (another npm start or test run?) and try again.",
    );
  }
  const bin = await resolveBinary("apiserver_receive_adapter", (line) => log?.info(line));
  const kubeconfig = await serviceAccountKubeconfig(
    api,
    opts.stateDir,
    manifest.metadata.namespace || INSTALL_NAMESPACE,
    manifest.spec.serviceAccountName,
    24 * 3600,
  );
  const logFile = path.join(opts.stateDir, "logs", `apiserver-source-${process.pid}-${++started}.log`);
  await mkdir(path.dirname(logFile), { recursive: true });
  const env = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/",
    K_SINK: sink,
    NAME: manifest.metadata.name,
    NAMESPACE: manifest.metadata.namespace,
    K_SOURCE_CONFIG: JSON.stringify(config),
    ...(manifest.spec.ceOverrides ? { K_CE_OVERRIDES: JSON.stringify(manifest.spec.ceOverrides) } : {}),
    // klog at V(2) says when each watch's initial list is in: objects made before that are never sent.
    K_KLOG_VERBOSITY: "2",
    PROFILING_PORT: "0",
  };
  const adapter: Managed = startProcess("apiserver_receive_adapter", bin, [`--kubeconfig=${kubeconfig}`], logFile, env);
  const expected = await reflectorCount(api, config);
  let watching: string[] = [];
  try {
    await waitUntil(
      `the ApiServerSource adapter's ${expected} watches`,
      async () => {
        watching = [...new Set([...(await readFile(logFile, "utf8")).matchAll(cachesPopulated)].map((m) => m[1] ?? ""))];
        return watching.length >= expected;
      },
      30_000,
      [adapter],
    );
  } catch (err) {
    await adapter.stop();
    throw err;
  }
  log?.info({ sink, mode: config.mode, watching, logFile }, "Started Knative's ApiServerSource adapter");
  return {
    watching,
    logFile,
    async failed() {
      return [...(await readFile(logFile, "utf8")).matchAll(failedSend)].length;
    },
    async stop() {
      await adapter.stop();
      log?.debug({ log: await tail(logFile, 5) }, "Stopped Knative's ApiServerSource adapter");
    },
  };
}

// Walle's reconcile function on a local cluster: an HTTP server acting as its own service account, fed by
// Knative's own ApiServerSource adapter (cluster/event-source.ts). Tests and `npm start` run it so.
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { handle } from "../functions/reconcile/index.ts";
import { loadConfig } from "../lib/app/config.ts";
import { createReceiver } from "../lib/app/receiver.ts";
import type { TickReport } from "../lib/app/tick.ts";
import { createWalle } from "../lib/app/walle.ts";
import { INSTALL_NAMESPACE, ServiceAccount } from "../lib/api/constants.ts";
import { getOrNull } from "../lib/k8s/actions.ts";
import { RestClient } from "../lib/k8s/rest.ts";
import { credentialsFromKubeconfig } from "./kubeconfig.ts";
import { nodeNetwork } from "./node.ts";
import type { Logger } from "../lib/log.ts";
import { startEventSource } from "./event-source.ts";
import { applyObjects, readManifestFiles, serviceAccountKubeconfig } from "./index.ts";
import { freePort } from "./processes.ts";
import { repoRoot } from "./toolchain.ts";

/**
 * What an install applies before the functions run: the namespace, the service accounts with their RBAC, and the
 * admission policy that bounds what those service accounts may make (so every test runs under it).
 */
export const installManifests = [
  ...["namespace.yaml", "reconcile-rbac.yaml", "apiserversource-rbac.yaml", "trigger-rbac.yaml", "tick-rbac.yaml", "reconcile-bounds.yaml"].map((f) =>
    path.join(repoRoot, "knative", f),
  ),
];

interface Pinned {
  kind?: string;
  metadata?: { name?: string };
  data?: Record<string, string>;
  spec?: { variables?: { name: string; expression: string }[] };
}

/**
 * Applies the install manifests with the local worker image in ConfigMap walle-worker, as an admin sets their
 * registry's image there: the functions read it, and the admission policy walle-worker-image pins Jobs to it (its
 * `image` variable, which knative/kustomization.yaml's replacement fills from the ConfigMap; these files are applied
 * one by one, without kustomize, so the same value is set here).
 */
export async function installWalle(admin: RestClient): Promise<void> {
  const objects = await readManifestFiles(installManifests);
  for (const o of objects as Pinned[]) {
    if (o.kind === "ConfigMap" && o.metadata?.name === WORKER_IMAGE_CONFIGMAP) o.data = { ...o.data, image: LOCAL_WORKER_IMAGE };
    if (o.kind === "ValidatingAdmissionPolicy" && o.metadata?.name === "walle-worker-image") {
      o.spec = { ...o.spec, variables: (o.spec?.variables ?? []).map((v) => (v.name === "image" ? { ...v, expression: `'${LOCAL_WORKER_IMAGE}'` } : v)) };
    }
  }
  await applyObjects(admin, objects);
}

/** The ConfigMap holding the install's worker image (knative/reconcile-bounds.yaml). */
export const WORKER_IMAGE_CONFIGMAP = "walle-worker";

/** The worker image the local node runs from this checkout: the local install's ConfigMap walle-worker names it. */
export const LOCAL_WORKER_IMAGE = "ghcr.io/ros-io/walle-worker:dev";
export const LOCAL_CLUSTER_NAME = "walle-local";

export interface RunningWalle {
  readonly url: string;
  /** The function's own client (service account walle-reconcile); its `requests` counts API calls. */
  readonly api: RestClient;
  /** API requests the function has made so far. */
  requests(): number;
  stop(): Promise<void>;
}

export interface RunWalleOptions {
  /** An admin client, to mint the service account's token and to run the event source. */
  readonly admin: RestClient;
  readonly stateDir: string;
  readonly log: Logger;
  readonly env?: Readonly<Record<string, string>>;
  readonly triggerToken?: string;
  /** Feed the function from Knative's ApiServerSource adapter (default true). */
  readonly eventSource?: boolean;
  /** The ApiServerSource the adapter is configured from (default knative/apiserversource.yaml). */
  readonly eventSourceManifest?: string;
  /** Where Walle is installed: the function's service account is walle-reconcile there (default walle-system). */
  readonly installNamespace?: string;
  /**
   * The address to listen on. Default: the host end of the local node's link, where its workers reach the function
   * with their progress. Any other cluster's workers cannot reach this machine, so elsewhere they get no sink.
   */
  readonly host?: string;
}

export async function runWalle(opts: RunWalleOptions): Promise<RunningWalle> {
  const installNamespace = opts.installNamespace ?? INSTALL_NAMESPACE;
  const kubeconfig = await serviceAccountKubeconfig(opts.admin, opts.stateDir, installNamespace, ServiceAccount.Reconcile, 24 * 3600);
  const api = new RestClient(credentialsFromKubeconfig(kubeconfig));
  // Workers POST progress to the function itself, so its URL is part of its configuration: the port is chosen first.
  // It listens on the host end of the node's link, where workers reach it (cluster/node.ts).
  const host = opts.host ?? nodeNetwork(opts.stateDir).hostIp;
  const port = await freePort(host);
  const url = `http://${host}:${port}/`;
  const { walle: config } = await loadConfig(
    {
      WALLE_WORKER_IMAGE: LOCAL_WORKER_IMAGE,
      WALLE_CLUSTER_NAME: LOCAL_CLUSTER_NAME,
      WALLE_INSTALL_NAMESPACE: installNamespace,
      ...opts.env,
      ...(opts.host ? {} : { WALLE_PROGRESS_SINK_URL: url }),
    },
    "walle-reconcile",
  );
  const walle = createWalle({ api, config, controller: "ros.io/walle-reconcile" });
  const server = createReceiver({
    log: opts.log,
    handle: (context, event) => handle({ ...context, walle }, event),
    stream: (at, credentials, log) => walle.streamCommand(at, credentials, log),
    ...(opts.triggerToken ? { triggerToken: opts.triggerToken } : {}),
  });
  // The receiver's own server, with its header and request deadlines, as the function serves in its pod.
  await server.listen(port, host);
  const source =
    opts.eventSource === false
      ? undefined
      : await startEventSource({
          api: opts.admin,
          stateDir: opts.stateDir,
          sink: url,
          log: opts.log,
          ...(opts.eventSourceManifest ? { manifest: opts.eventSourceManifest } : {}),
        });
  return {
    url,
    api,
    requests: () => api.requests,
    async stop() {
      await source?.stop();
      await server.close();
      api.close();
    },
  };
}

type EnvVar = {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: KeyRef; configMapKeyRef?: KeyRef };
};
interface KeyRef {
  name: string;
  key: string;
  optional?: boolean;
}

/** An env var's value from a key of a Secret (base64 in `data`) or a ConfigMap, as the kubelet resolves it. */
async function keyValue(admin: RestClient, namespace: string, kind: "Secret" | "ConfigMap", ref: KeyRef, name: string): Promise<string | undefined> {
  const object = (await getOrNull(admin, `/api/v1/namespaces/${namespace}/${kind === "Secret" ? "secrets" : "configmaps"}/${ref.name}`)) as {
    data?: Record<string, string>;
  } | null;
  const raw = object?.data?.[ref.key];
  if (raw === undefined && !ref.optional) throw new Error(`${name}: ${kind} ${namespace}/${ref.name} has no key ${ref.key}`);
  return raw === undefined || kind === "ConfigMap" ? raw : Buffer.from(raw, "base64").toString();
}

interface KnativeService {
  spec: {
    template: {
      spec: {
        containers: { env?: EnvVar[]; volumeMounts?: { name: string; mountPath: string }[] }[];
        volumes?: { name: string; configMap?: { name: string } }[];
      };
    };
  };
}

/**
 * The reconcile function as an install deployed it, for running it here instead of in its pod (Knative Serving
 * cannot run on the local cluster): the environment of the installed Knative Service `walle-reconcile` in
 * `namespace` resolved as the kubelet resolves it (values, the pod's name and namespace, optional Secret keys), its
 * ConfigMap volumes written under the state directory with the variables that point into them moved along, and the
 * installed ApiServerSource written out for the adapter. WALLE_PROGRESS_SINK_URL is runWalle's: where it listens.
 */
export async function installedFunction(
  admin: RestClient,
  stateDir: string,
  namespace: string,
): Promise<{ env: Record<string, string>; eventSourceManifest: string }> {
  const service = await admin.get<KnativeService>(`/apis/serving.knative.dev/v1/namespaces/${namespace}/services/${ServiceAccount.Reconcile}`);
  const pod = service.spec.template.spec;
  const [container] = pod.containers;
  const dir = path.join(stateDir, "installed", namespace);
  const mounts: [string, string][] = [];
  for (const mount of container?.volumeMounts ?? []) {
    const volume = pod.volumes?.find((v) => v.name === mount.name);
    if (!volume?.configMap)
      throw new Error(`volume ${mount.name} of the installed ${ServiceAccount.Reconcile} is not a ConfigMap, which is all a local run can give it`);
    const data = (await admin.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${namespace}/configmaps/${volume.configMap.name}`)).data ?? {};
    const local = path.join(dir, mount.name);
    await mkdir(local, { recursive: true });
    for (const [file, text] of Object.entries(data)) await writeFile(path.join(local, file), text);
    mounts.push([mount.mountPath, local]);
  }
  const env: Record<string, string> = {};
  for (const e of container?.env ?? []) {
    const from = e.valueFrom;
    let value = e.value;
    if (from?.secretKeyRef) value = await keyValue(admin, namespace, "Secret", from.secretKeyRef, e.name);
    else if (from?.configMapKeyRef) value = await keyValue(admin, namespace, "ConfigMap", from.configMapKeyRef, e.name);
    else if (from) throw new Error(`${e.name}: a local run cannot resolve ${JSON.stringify(from)}`);
    if (value === undefined) continue;
    for (const [mountPath, local] of mounts) if (value.startsWith(`${mountPath}/`)) value = path.join(local, value.slice(mountPath.length + 1));
    env[e.name] = value;
  }
  delete env.WALLE_PROGRESS_SINK_URL;
  const source = await admin.get<object>(`/apis/sources.knative.dev/v1/namespaces/${namespace}/apiserversources/${ServiceAccount.Reconcile}`);
  const eventSourceManifest = path.join(dir, "apiserversource.json");
  await mkdir(dir, { recursive: true });
  await writeFile(eventSourceManifest, JSON.stringify(source));
  return { env, eventSourceManifest };
}

/** A tick's report as its command prints it (the last line of stdout), with the API requests it made. */
export type TickCommandReport = TickReport & { readonly apiRequests?: number };

export interface TickRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** The report, the last line of stdout; undefined when the tick printed none (it failed to start, say). */
  readonly report?: TickCommandReport;
}

/** The tick's kubeconfig per cluster (state directory): its token lasts a day. */
const tickKubeconfigs = new Map<string, Promise<string>>();

/**
 * The tick's command (functions/tick/main.ts) as its Job runs it, here: as service account walle-tick of
 * `installNamespace` (a TokenRequest token minted with `admin`), with the local worker image and cluster name unless
 * `env` says otherwise. Returns its argv and environment, for a caller that spawns it itself (to kill it, say).
 */
export async function tickCommand(o: {
  admin: RestClient;
  stateDir: string;
  args?: readonly string[];
  env?: Readonly<Record<string, string>>;
}): Promise<{ argv: string[]; env: Record<string, string> }> {
  const kubeconfig = tickKubeconfigs.get(o.stateDir) ?? serviceAccountKubeconfig(o.admin, o.stateDir, INSTALL_NAMESPACE, ServiceAccount.Tick, 24 * 3600);
  tickKubeconfigs.set(o.stateDir, kubeconfig);
  return {
    argv: [process.execPath, path.join(repoRoot, "functions", "tick", "main.ts"), ...(o.args ?? [])],
    env: {
      PATH: process.env.PATH ?? "",
      WALLE_WORKER_IMAGE: LOCAL_WORKER_IMAGE,
      WALLE_CLUSTER_NAME: LOCAL_CLUSTER_NAME,
      LOG_LEVEL: "warn",
      ...o.env,
      KUBECONFIG: await kubeconfig,
    },
  };
}

/** Runs the tick's command once (tickCommand) and reads its exit and report. */
export async function runTickCommand(o: Parameters<typeof tickCommand>[0]): Promise<TickRun> {
  const { argv, env } = await tickCommand(o);
  const [bin = process.execPath, ...args] = argv;
  return new Promise((resolve) => {
    execFile(bin, args, { env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      let report: TickCommandReport | undefined;
      try {
        const parsed = JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as Partial<TickCommandReport>;
        report = Array.isArray(parsed.actions) && Array.isArray(parsed.errors) ? (parsed as TickCommandReport) : undefined;
      } catch {
        report = undefined;
      }
      resolve({ code, stdout, stderr, ...(report ? { report } : {}) });
    });
  });
}

// Walle's reconcile function on a local cluster: an HTTP server acting as its own service account, fed by
// Knative's own ApiServerSource adapter (cluster/event-source.ts). Tests and `npm start` run it so.
import path from "node:path";
import { handle } from "../functions/reconcile/index.ts";
import { loadConfig } from "../lib/app/config.ts";
import { createReceiver } from "../lib/app/receiver.ts";
import { createWalle } from "../lib/app/walle.ts";
import { INSTALL_NAMESPACE, ServiceAccount } from "../lib/api/constants.ts";
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
  ...["namespace.yaml", "reconcile-rbac.yaml", "apiserversource-rbac.yaml", "trigger-rbac.yaml", "reconcile-bounds.yaml"].map((f) => path.join(repoRoot, "knative", f)),
  path.join(repoRoot, "keda", "tick-rbac.yaml"),
];

export async function installWalle(admin: RestClient): Promise<void> {
  await applyObjects(admin, await readManifestFiles(installManifests));
}

/** The worker image the local node runs from this checkout (any registry or tag of walle-worker). */
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
}

export async function runWalle(opts: RunWalleOptions): Promise<RunningWalle> {
  const kubeconfig = await serviceAccountKubeconfig(opts.admin, opts.stateDir, INSTALL_NAMESPACE, ServiceAccount.Reconcile, 24 * 3600);
  const api = new RestClient(credentialsFromKubeconfig(kubeconfig));
  // Workers POST progress to the function itself, so its URL is part of its configuration: the port is chosen first.
  // It listens on the host end of the node's link, where workers reach it (cluster/node.ts).
  const host = nodeNetwork(opts.stateDir).hostIp;
  const port = await freePort(host);
  const url = `http://${host}:${port}/`;
  const { walle: config } = await loadConfig(
    { WALLE_WORKER_IMAGE: LOCAL_WORKER_IMAGE, WALLE_CLUSTER_NAME: LOCAL_CLUSTER_NAME, WALLE_PROGRESS_SINK_URL: url, ...opts.env },
    "walle-reconcile",
  );
  const walle = createWalle({ api, config, controller: "ros.io/walle-reconcile" });
  const server = createReceiver({
    log: opts.log,
    handle: (context, event) => handle({ ...context, walle }, event),
    ...(opts.triggerToken ? { triggerToken: opts.triggerToken } : {}),
  });
  // The receiver's own server, with its header and request deadlines, as the function serves in its pod.
  await server.listen(port, host);
  const source = opts.eventSource === false ? undefined : await startEventSource({ api: opts.admin, stateDir: opts.stateDir, sink: url, log: opts.log });
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

// Walle on the test cluster: the reconcile function as an HTTP server acting as its own service account, fed by
// the local event source exactly as Knative's ApiServerSource would feed it.
import type { AddressInfo } from "node:net";
import { createServer as createHttpServer, type RequestListener } from "node:http";
import { onTestFinished } from "vitest";
import { startEventSource } from "../../cluster/event-source.ts";
import { createHandler } from "../../functions/reconcile/handler.ts";
import { createServer } from "../../functions/reconcile/server.ts";
import { INSTALL_NAMESPACE, ServiceAccount } from "../../lib/api/constants.ts";
import { createLogger } from "../../lib/log.ts";
import type { RestClient } from "../../lib/k8s/rest.ts";
import { admin, clientForServiceAccount } from "./kube.ts";

export const WORKER_IMAGE = "ghcr.io/ros-io/walle-worker:dev";
export const CLUSTER_NAME = "walle-test";

export interface RunningWalle {
  readonly url: string;
  readonly api: RestClient;
  /** Requests the reconcile function made, for counting. */
  requests(): number;
  stop(): Promise<void>;
}

/** Starts the reconcile function and the local event source; both stop when the test ends. */
export async function startWalle(opts: { env?: Record<string, string>; eventSource?: boolean; triggerToken?: string } = {}): Promise<RunningWalle> {
  const api = await clientForServiceAccount(INSTALL_NAMESPACE, ServiceAccount.Reconcile);
  const level = process.env.WALLE_TEST_LOG_LEVEL === "info" ? "info" : "silent";
  const log = createLogger({ function: "walle-reconcile", level });
  // Listen first: workers POST progress to the function itself, so its URL is part of its configuration.
  let app: RequestListener | undefined;
  const http = createHttpServer((req, res) => app?.(req, res));
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", () => r()));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/`;
  const handler = await createHandler({
    log,
    api,
    triggerTokenConfigured: opts.triggerToken !== undefined,
    env: {
      WALLE_WORKER_IMAGE: WORKER_IMAGE,
      WALLE_CLUSTER_NAME: CLUSTER_NAME,
      WALLE_SNAPSHOT_TIMEOUT_SECONDS: "120",
      WALLE_WORKER_DEADLINE_SECONDS: "300",
      WALLE_PROGRESS_SINK_URL: url,
      ...opts.env,
    },
  });
  const server = createServer({ handler, log, ...(opts.triggerToken ? { triggerToken: opts.triggerToken } : {}) });
  app = server.app;
  const source = opts.eventSource === false ? undefined : await startEventSource({ api: admin(), sink: url });
  const running: RunningWalle = {
    url,
    api,
    requests: () => api.requests,
    async stop() {
      await source?.stop();
      await server.close();
      await new Promise<void>((r) => http.close(() => r()));
      api.close();
    },
  };
  onTestFinished(() => running.stop());
  return running;
}

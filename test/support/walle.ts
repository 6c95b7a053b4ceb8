// Walle on the test cluster: the reconcile function as an HTTP server acting as its own service account, fed by
// Knative's ApiServerSource adapter; it stops when the test ends.
import { inject, onTestFinished } from "vitest";
import { LOCAL_CLUSTER_NAME, runWalle, type RunningWalle } from "../../cluster/run-walle.ts";
import { createLogger } from "../../lib/log.ts";
import { admin } from "./kube.ts";

export { LOCAL_WORKER_IMAGE as WORKER_IMAGE } from "../../cluster/run-walle.ts";
export const CLUSTER_NAME = LOCAL_CLUSTER_NAME;
export type { RunningWalle };

export async function startWalle(opts: { env?: Record<string, string>; eventSource?: boolean; triggerToken?: string } = {}): Promise<RunningWalle> {
  const level = process.env.WALLE_TEST_LOG_LEVEL === "info" ? "info" : "silent";
  const walle = await runWalle({
    admin: admin(),
    stateDir: inject("clusterStateDir"),
    log: createLogger({ function: "walle-reconcile", level }),
    env: { WALLE_SNAPSHOT_TIMEOUT_SECONDS: "120", WALLE_WORKER_DEADLINE_SECONDS: "300", ...opts.env },
    ...(opts.triggerToken ? { triggerToken: opts.triggerToken } : {}),
    ...(opts.eventSource === false ? { eventSource: false } : {}),
  });
  onTestFinished(() => walle.stop());
  return walle;
}

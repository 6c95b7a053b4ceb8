// npm start: Walle on the embedded local cluster. It brings up the real control plane with the upstream and
// Walle CRDs, the local node agent and Walle's install namespace, prints the KUBECONFIG, and stays up until
// Ctrl-C, then stops everything it started.
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { applyObjects, startCluster, STATE_ROOT } from "../cluster/index.ts";

const log = (msg: string, extra?: Record<string, unknown>) =>
  console.log(JSON.stringify({ time: new Date().toISOString(), msg, ...extra }));

const stateDir = process.env.WALLE_CLUSTER_DIR ?? (await mkdtemp(path.join(STATE_ROOT, "walle-start-")));
const cluster = await startCluster({ stateDir, log });
await applyObjects(cluster.api, [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "walle-system" } }]);

console.log(`
Walle's local cluster is up (${cluster.server}).
In another shell:
  export KUBECONFIG=${cluster.kubeconfig}
Press Ctrl-C to stop it.
`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  log("Stopping the local cluster.");
  await cluster.stop();
  if (!process.env.WALLE_CLUSTER_DIR) await rm(stateDir, { recursive: true, force: true });
  process.exit(0);
}
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());

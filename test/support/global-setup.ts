// Global setup of the `cluster` project: one real local cluster for the whole suite, which tests share and
// separate by namespace. It also lays down Walle's install namespace and service accounts.
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { applyObjects, startCluster, STATE_ROOT, type Cluster } from "../../cluster/index.ts";
import { installWalle } from "../../cluster/run-walle.ts";
import { resolveResticBinaries } from "../../cluster/toolchain.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kubeconfig: string;
    clusterStateDir: string;
    clusterServer: string;
    /** Where servers that pods must reach listen: the host end of the real node's link (cluster/node.ts). */
    nodeHostIp?: string;
  }
}

export const INSTALL_NAMESPACE = "walle-system";
export const WALLE_SERVICE_ACCOUNTS = ["walle-reconcile", "walle-tick"] as const;

let cluster: Cluster | undefined;
let stateDir: string | undefined;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  stateDir = await mkdtemp(path.join(STATE_ROOT, "walle-test-"));
  const started = Date.now();
  cluster = await startCluster({
    stateDir,
    log: (msg, extra) => {
      if (/^(Building|Built|Downloading|Local cluster is ready)/.test(msg)) console.log(msg, extra ? JSON.stringify(extra) : "");
    },
  });
  // Walle's namespace, service accounts and RBAC, as an install applies them: tests act as its service accounts
  // under these rules.
  await installWalle(cluster.api);
  await applyObjects(
    cluster.api,
    WALLE_SERVICE_ACCOUNTS.map((name) => ({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name, namespace: INSTALL_NAMESPACE } })),
  );
  const bins = await resolveResticBinaries();
  project.provide("restic", bins.restic);
  project.provide("restServer", bins.restServer);
  console.log(`Local cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s at ${cluster.server} (state ${stateDir}).`);
  project.provide("kubeconfig", cluster.kubeconfig);
  project.provide("clusterStateDir", stateDir);
  project.provide("clusterServer", cluster.server);
  project.provide("nodeHostIp", cluster.node.network.hostIp);
  return async () => {
    await cluster?.stop();
    if (stateDir && !process.env.WALLE_KEEP_TEST_CLUSTER) await rm(stateDir, { recursive: true, force: true });
  };
}

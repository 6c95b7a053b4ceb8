// The core's configuration as the unit tables use it: an install like the README's, with a worker image and
// deadlines that the expected objects spell out.
import type { WalleConfig } from "../../lib/core/builders.ts";

export const testConfig: WalleConfig = {
  installNamespace: "walle-system",
  clusterName: "prod",
  workerImage: "ghcr.io/ros-io/walle-worker:1.0.0",
  snapClassMappings: [],
  progressSinkUrl: "http://walle-reconcile.walle-system.svc.cluster.local",
  workerDeadlineSeconds: 3600,
  snapshotTimeoutSeconds: 600,
  workerBackoffLimit: 2,
  maxWorkersPerRepository: 4,
};

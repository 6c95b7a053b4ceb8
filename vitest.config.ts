import { defineConfig } from "vitest/config";

// Three projects: `unit` is pure logic with no cluster and no processes (fast tables); `integration` runs real
// binaries of the toolchain (restic, rest-server) without a cluster; `cluster` runs against the real
// kube-apiserver and kube-controller-manager that test/support/global-setup.ts starts once and shares.
export default defineConfig({
  test: {
    reporters: ["default", "./test/support/summary-reporter.ts"],
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          environment: "node",
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          environment: "node",
          globalSetup: ["test/support/toolchain-setup.ts"],
          testTimeout: 120_000,
          hookTimeout: 900_000,
        },
      },
      {
        test: {
          name: "cluster",
          include: ["test/cluster/**/*.test.ts"],
          environment: "node",
          globalSetup: ["test/support/global-setup.ts"],
          testTimeout: 120_000,
          hookTimeout: 600_000,
          // The suite shares one cluster and separates tests by namespace. Files run one at a time: each runs its
          // own reconcile function, and a resync drives every BackupJob in the cluster, as the one deployed
          // function does, so two at once would drive each other's objects.
          fileParallelism: false,
        },
      },
    ],
  },
});

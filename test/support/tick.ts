// The tick on the test cluster, run as the ScaledJob runs it: the real command (`functions/tick/main.ts`) as a
// process, acting as its own service account (walle-tick, with the RBAC of keda/tick-rbac.yaml), with `--now`
// stepping through time.
import { execFile } from "node:child_process";
import path from "node:path";
import { inject } from "vitest";
import { serviceAccountKubeconfig } from "../../cluster/index.ts";
import { LOCAL_CLUSTER_NAME, LOCAL_WORKER_IMAGE } from "../../cluster/run-walle.ts";
import { repoRoot } from "../../cluster/toolchain.ts";
import type { TickReport } from "../../lib/app/tick.ts";
import { INSTALL_NAMESPACE, ServiceAccount } from "../../lib/api/constants.ts";
import type { On } from "./backup-fixtures.ts";
import { admin } from "./kube.ts";

export interface TickRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** The report, the last line of stdout; undefined when the tick printed none. */
  readonly report?: TickReport;
}

/** The tick's kubeconfig per cluster (state directory). */
const kubeconfigs = new Map<string, Promise<string>>();

export async function runTick(opts: { now?: Date | string; dryRun?: boolean; schedule?: string; env?: Record<string, string>; on?: On } = {}): Promise<TickRun> {
  const on = opts.on ?? { api: admin(), stateDir: inject("clusterStateDir") };
  const kubeconfig = kubeconfigs.get(on.stateDir) ?? serviceAccountKubeconfig(on.api, on.stateDir, INSTALL_NAMESPACE, ServiceAccount.Tick, 24 * 3600);
  kubeconfigs.set(on.stateDir, kubeconfig);
  const args = [
    path.join(repoRoot, "functions", "tick", "main.ts"),
    ...(opts.now ? ["--now", typeof opts.now === "string" ? opts.now : opts.now.toISOString()] : []),
    ...(opts.dryRun ? ["--dry-run"] : []),
    ...(opts.schedule ? ["--schedule", opts.schedule] : []),
  ];
  const env = {
    PATH: process.env.PATH ?? "",
    KUBECONFIG: await kubeconfig,
    WALLE_WORKER_IMAGE: LOCAL_WORKER_IMAGE,
    WALLE_CLUSTER_NAME: LOCAL_CLUSTER_NAME,
    WALLE_SNAPSHOT_TIMEOUT_SECONDS: "120",
    WALLE_WORKER_DEADLINE_SECONDS: "300",
    LOG_LEVEL: process.env.WALLE_TEST_LOG_LEVEL === "info" ? "info" : "warn",
    ...opts.env,
  };
  return new Promise((resolve) => {
    execFile(process.execPath, args, { env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      const last = stdout.trim().split("\n").at(-1) ?? "";
      let report: TickReport | undefined;
      try {
        report = JSON.parse(last) as TickReport;
      } catch {
        report = undefined;
      }
      resolve({ code, stdout, stderr, ...(report ? { report } : {}) });
    });
  });
}

// The tick on the test cluster, run as the ScaledJob runs it: the real command (`functions/tick/main.ts`) as a
// process, acting as its own service account (walle-tick, with the RBAC of knative/tick-rbac.yaml), with `--now`
// stepping through time (cluster/run-walle.ts runTickCommand).
import { inject } from "vitest";
import { runTickCommand, type TickRun } from "../../cluster/run-walle.ts";
import type { On } from "./backup-fixtures.ts";
import { admin } from "./kube.ts";

export type { TickRun };

export async function runTick(
  opts: { now?: Date | string; dryRun?: boolean; schedule?: string; env?: Record<string, string>; on?: On } = {},
): Promise<TickRun> {
  const on = opts.on ?? { api: admin(), stateDir: inject("clusterStateDir") };
  const args = [
    ...(opts.now ? ["--now", typeof opts.now === "string" ? opts.now : opts.now.toISOString()] : []),
    ...(opts.dryRun ? ["--dry-run"] : []),
    ...(opts.schedule ? ["--schedule", opts.schedule] : []),
  ];
  const env = {
    WALLE_SNAPSHOT_TIMEOUT_SECONDS: "120",
    WALLE_WORKER_DEADLINE_SECONDS: "300",
    LOG_LEVEL: process.env.WALLE_TEST_LOG_LEVEL === "info" ? "info" : "warn",
    ...opts.env,
  };
  return runTickCommand({ admin: on.api, stateDir: on.stateDir, args, env });
}

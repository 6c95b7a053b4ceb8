// prune: remove stale locks, forget the snapshots the retention policy no longer keeps, then prune the data only
// they used.
import { forgetArgs, pruneArgs } from "../../../lib/restic/args.ts";
import type { ForgetStats } from "../../../lib/restic/result.ts";
import { ForgetReport, forgetCounts } from "../../../lib/restic/snapshots.ts";
import type { PruneConfig } from "../config.ts";
import { judge, parseJson, resultOf, runCreatingRepository, type CommandResult, type WorkerContext } from "./shared.ts";
import { removeStaleLocks } from "./unlock.ts";

export async function prune(config: PruneConfig, ctx: WorkerContext): Promise<CommandResult> {
  const { host, schedule, retention: policy, lockWait } = config;
  // A worker killed mid-run (a deadline, an evicted pod) leaves its lock behind, and a prune needs the repository
  // to itself: stale locks go first. restic removes only locks whose process is gone, so a live one stays.
  const { removed } = await removeStaleLocks(config, ctx);
  ctx.log.info({ repository: config.repository, host, schedule, retention: policy }, "Forgetting snapshots by the retention policy.");
  const forget = await runCreatingRepository({ command: "forget", args: forgetArgs({ host, schedule, policy, lockWait }), keepStdout: true }, config, ctx);
  const forgetVerdict = judge(forget, config);
  if (forgetVerdict.reason !== "Completed") return resultOf(forget, forgetVerdict);
  const counts = countsOf(forget.stdout);
  ctx.log.info({ forget: counts }, `Forgot ${counts?.removed ?? "some"} snapshots and kept ${counts?.kept ?? "the rest"}.`);

  // Always pruned, not only after a forget removed something: prune also frees the data of interrupted backups.
  const pruned = await ctx.restic.run({ command: "prune", args: pruneArgs({ lockWait }) });
  const verdict = judge(pruned, config);
  const forgot = counts ? `forgot ${counts.removed} snapshots and kept ${counts.kept}` : "forgot snapshots by the policy";
  const said = removed ? `removed ${removed} stale lock${removed === 1 ? "" : "s"} first; ${forgot}` : forgot;
  const forgotten = `${said.charAt(0).toUpperCase()}${said.slice(1)}`;
  const message = verdict.reason === "Completed" ? `${forgotten}, and pruned the repository.` : `${forgotten}, but prune failed: ${verdict.message}`;
  return { ...resultOf(pruned, verdict), message, ...(counts ? { forget: counts } : {}) };
}

/** The counts from forget's JSON report; undefined when it printed none (nothing matched) or an unreadable one. */
function countsOf(stdout: readonly string[]): ForgetStats | undefined {
  const report = ForgetReport.safeParse(parseJson(stdout.join("\n")));
  return report.success ? forgetCounts(report.data) : undefined;
}

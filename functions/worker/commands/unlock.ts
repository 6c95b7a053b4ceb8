// unlock: remove the locks of restic processes that are gone. Locks of running processes stay: without
// --remove-all, restic removes only stale ones.
import { unlockArgs } from "../../../lib/restic/args.ts";
import type { UnlockConfig } from "../config.ts";
import { judge, resultOf, type CommandResult, type WorkerContext } from "./shared.ts";

export async function unlock(config: UnlockConfig, ctx: WorkerContext): Promise<CommandResult> {
  return (await removeStaleLocks(config, ctx)).result;
}

/** The unlock, and how many stale locks it removed (0 also when it failed), for a command that unlocks first. */
export async function removeStaleLocks(config: UnlockConfig, ctx: WorkerContext): Promise<{ result: CommandResult; removed: number }> {
  ctx.log.info({ repository: config.repository }, "Removing stale locks.");
  const run = await ctx.restic.run({ command: "unlock", args: unlockArgs(), keepStdout: true });
  const verdict = judge(run, config);
  if (verdict.reason !== "Completed") return { result: resultOf(run, verdict), removed: 0 };
  // restic says "successfully removed 2 locks" when it removed any, and nothing otherwise.
  const removed = Number(run.stdout.map((l) => /removed (\d+) locks?/.exec(l)?.[1]).find((n) => n !== undefined) ?? 0);
  const message = removed ? `restic removed ${removed} stale lock${removed === 1 ? "" : "s"}.` : "There were no stale locks to remove.";
  return { result: { ...resultOf(run, verdict), message }, removed };
}

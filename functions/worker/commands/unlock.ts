// unlock: remove the locks of restic processes that are gone. Locks of running processes stay: without
// --remove-all, restic removes only stale ones.
import { unlockArgs } from "../../../lib/restic/args.ts";
import type { UnlockConfig } from "../config.ts";
import { judge, resultOf, type CommandResult, type WorkerContext } from "./shared.ts";

export async function unlock(config: UnlockConfig, ctx: WorkerContext): Promise<CommandResult> {
  ctx.log.info({ repository: config.repository }, "Removing stale locks.");
  const run = await ctx.restic.run({ command: "unlock", args: unlockArgs(), keepStdout: true });
  const verdict = judge(run, config);
  if (verdict.reason !== "Completed") return resultOf(run, verdict);
  // restic says "successfully removed 2 locks" when it removed any, and nothing otherwise.
  const removed = run.stdout.map((l) => /removed (\d+) locks?/.exec(l)?.[1]).find((n) => n !== undefined);
  return { ...resultOf(run, verdict), message: removed ? `restic removed ${removed} stale lock${removed === "1" ? "" : "s"}.` : "There were no stale locks to remove." };
}

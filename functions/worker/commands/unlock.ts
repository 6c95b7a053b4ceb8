// unlock: remove the locks of restic processes that are gone. Locks of running processes stay. Two rules decide
// which are gone: restic's own (without --remove-all: 30 minutes old, or a dead PID on this host), and Walle's for
// its killed workers (lib/restic/locks.ts), which restic cannot tell from live ones.
import { hostname } from "node:os";
import { catLockArgs, listLocksArgs, unlockArgs } from "../../../lib/restic/args.ts";
import { judgeLock, ResticLock, unlockPlan, type LockJudgement } from "../../../lib/restic/locks.ts";
import type { CommonConfig, StaleLockConfig, UnlockConfig } from "../config.ts";
import { judge, parseJson, resultOf, type CommandResult, type WorkerContext } from "./shared.ts";

export async function unlock(config: UnlockConfig, ctx: WorkerContext): Promise<CommandResult> {
  return (await removeStaleLocks(config, ctx)).result;
}

/** The unlock, and how many stale locks it removed (0 also when it failed), for a command that unlocks first. */
export async function removeStaleLocks(config: CommonConfig & StaleLockConfig, ctx: WorkerContext): Promise<{ result: CommandResult; removed: number }> {
  ctx.log.info({ repository: config.repository }, "Removing stale locks.");
  const run = await ctx.restic.run({ command: "unlock", args: unlockArgs(), keepStdout: true });
  const verdict = judge(run, config);
  if (verdict.reason !== "Completed") return { result: resultOf(run, verdict), removed: 0 };
  const byRestic = removedCount(run.stdout);
  const workers = config.host ? await removeGoneWorkersLocks({ ...config, host: config.host }, ctx) : { removed: 0, note: "" };
  const removed = byRestic + workers.removed;
  const said = removed ? `Removed ${removed} stale lock${removed === 1 ? "" : "s"}` : "There were no stale locks to remove";
  const detail = workers.removed ? ` (${workers.removed} of Walle workers that are gone)` : "";
  return { result: { ...resultOf(run, verdict), message: `${said}${detail}${workers.note ? `; ${workers.note}` : ""}.` }, removed };
}

/** restic says "successfully removed 2 locks" when it removed any, and nothing otherwise. */
function removedCount(stdout: readonly string[]): number {
  return Number(stdout.map((l) => /removed (\d+) locks?/.exec(l)?.[1]).find((n) => n !== undefined) ?? 0);
}

/**
 * The locks of this cluster's workers that are gone: read one by one, then removed together when every lock the
 * repository holds is such a one (restic removes locks only all at once). Any failure here leaves the locks as they
 * are and is logged; the command that follows meets them and says so.
 */
async function removeGoneWorkersLocks(
  config: CommonConfig & StaleLockConfig & { host: string },
  ctx: WorkerContext,
): Promise<{ removed: number; note: string }> {
  const list = await ctx.restic.run({ command: "list", args: listLocksArgs(), keepStdout: true });
  if (judge(list, config).reason !== "Completed") return { removed: 0, note: "" };
  const ids = list.stdout.map((l) => l.trim()).filter((l) => /^[0-9a-f]{64}$/.test(l));
  if (ids.length === 0) return { removed: 0, note: "" };
  const evidence = {
    clusterName: config.host,
    ownHostname: ctx.hostname ?? hostname(),
    ...(config.staleLocksBefore ? { staleBefore: config.staleLocksBefore } : {}),
  };
  const judged: LockJudgement[] = [];
  for (const id of ids) {
    const cat = await ctx.restic.run({ command: "cat", args: catLockArgs(id), keepStdout: true });
    // A lock removed since the list (its holder finished) is simply gone.
    if (judge(cat, config).reason !== "Completed") continue;
    judged.push(judgeLock(id, ResticLock.safeParse(parseJson(cat.stdout.join("\n"))).data, evidence));
  }
  const plan = unlockPlan(judged);
  for (const j of judged) ctx.log.info({ lock: j.id.slice(0, 8), stale: j.stale }, `Lock ${j.id.slice(0, 8)}: ${j.why}.`);
  if (plan.stale.length === 0) return { removed: 0, note: "" };
  if (!plan.removeAll) {
    const n = plan.stale.length;
    const note = `left ${n} lock${n === 1 ? "" : "s"} of Walle workers that are gone, since restic removes locks only all at once and other locks are held: ${plan.kept.map((k) => k.why).join("; ")}`;
    ctx.log.warn({ kept: plan.kept.length }, note);
    return { removed: 0, note };
  }
  const removal = await ctx.restic.run({ command: "unlock", args: unlockArgs({ removeAll: true }), keepStdout: true });
  const verdict = judge(removal, config);
  if (verdict.reason !== "Completed") {
    ctx.log.warn({ reason: verdict.reason }, `Could not remove the locks of Walle workers that are gone: ${verdict.message}`);
    return { removed: 0, note: "" };
  }
  const removed = removedCount(removal.stdout) || plan.stale.length;
  ctx.log.info({ removed }, `Removed the locks of Walle workers that are gone: ${plan.stale.map((s) => s.why).join("; ")}.`);
  return { removed, note: "" };
}

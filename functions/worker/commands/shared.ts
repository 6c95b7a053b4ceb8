// What the command drivers share: their context, their result, and running restic with repository creation.
import type { Logger } from "pino";
import { initArgs } from "../../../lib/restic/args.ts";
import { exitMeaning } from "../../../lib/restic/exit-codes.ts";
import { classify, type Verdict } from "../../../lib/restic/outcome.ts";
import type { BackupStats, ForgetStats, Reason, RestoreStats, SnapshotEntry } from "../../../lib/restic/result.ts";
import type { CommonConfig } from "../config.ts";
import type { ProgressKind } from "../../../lib/restic/progress.ts";
import type { ProgressReporter } from "../progress.ts";
import type { ResticInvocation, ResticRun } from "../restic.ts";

export interface WorkerContext {
  restic: { run(inv: ResticInvocation): Promise<ResticRun> };
  log: Logger;
  progress(kind: ProgressKind): ProgressReporter;
  /** The pod's hostname, which restic writes into its locks. Default: the system's. */
  hostname?: string;
}

/** What a command found; main.ts adds the command, the outcome and the times. */
export interface CommandResult {
  reason: Reason;
  message: string;
  snapshotId?: string;
  exitCode?: number | null;
  exitMeaning?: string;
  backup?: BackupStats;
  restore?: RestoreStats;
  forget?: ForgetStats;
  snapshots?: SnapshotEntry[];
  snapshotsTotal?: number;
}

/** The verdict on one run, in the words of this configuration (its repository, its waits). */
export function judge(run: ResticRun, config: CommonConfig): Verdict {
  return classify(run.facts, { repository: config.repository, lockWait: config.lockWait, unreachableTimeout: config.unreachableTimeout });
}

/** A result carrying restic's exit code and its meaning beside the verdict. */
export function resultOf(run: ResticRun, verdict: Verdict): CommandResult {
  return { ...verdict, exitCode: run.facts.exitCode, exitMeaning: exitMeaning(run.facts.exitCode, run.facts.signal) };
}

/**
 * Runs restic and, when the repository does not exist and INITIALIZE_REPO allows it, creates the repository and
 * runs it once more. Trying first costs nothing when the repository exists, the usual case, where a probe before
 * every backup would cost a round trip. When init fails, the second run still happens: another worker of the
 * same BackupSet may have created the repository a moment earlier, and otherwise restic says again what is wrong.
 */
export async function runCreatingRepository(inv: ResticInvocation, config: CommonConfig, ctx: WorkerContext): Promise<ResticRun> {
  const first = await ctx.restic.run(inv);
  if (judge(first, config).reason !== "NoRepository") return first;
  if (!config.initializeRepo) return config.repositoryWaitMs > 0 ? awaitRepository(inv, config, ctx, first) : first;
  ctx.log.info({ repository: config.repository }, "Initialising the repository: it does not exist and INITIALIZE_REPO is set.");
  const init = await ctx.restic.run({ command: "init", args: initArgs() });
  const verdict = judge(init, config);
  if (verdict.reason === "Completed") ctx.log.info({ repository: config.repository }, "Initialised the repository.");
  else ctx.log.warn({ reason: verdict.reason }, `Could not initialise the repository: ${verdict.message}`);
  return ctx.restic.run(inv);
}

/** How often a worker that waits for another one to create the repository looks again. */
export const REPOSITORY_POLL_MS = 3_000;

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Another worker creates the repository (the one of a schedule's first run that may): run again until it exists
 * or REPOSITORY_WAIT has passed, then report what restic last said.
 */
async function awaitRepository(inv: ResticInvocation, config: CommonConfig, ctx: WorkerContext, first: ResticRun): Promise<ResticRun> {
  ctx.log.info({ repository: config.repository, waitMs: config.repositoryWaitMs }, "Waiting for another worker to create the repository.");
  let last = first;
  for (let waited = 0; waited < config.repositoryWaitMs && judge(last, config).reason === "NoRepository"; waited += REPOSITORY_POLL_MS) {
    await delay(REPOSITORY_POLL_MS);
    last = await ctx.restic.run(inv);
  }
  return last;
}

export function shortId(id: string): string {
  return id.slice(0, 8);
}

/** restic's JSON output read back; undefined when it is not JSON, which the caller's schema then rejects. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// The worker: the container of a backup, restore, prune, check or unlock Job.
//
//   node functions/worker/main.ts <backup|restore|prune|check|unlock|snapshots>
//
// Configuration comes from the environment (config.ts documents every variable). The result goes to the
// termination message as compact JSON (lib/restic/result.ts), logs go to stdout as pino JSON. Exit codes, which
// a Job's podFailurePolicy can act on: 0 succeeded or skipped; 2 invalid configuration; 130 cancelled; otherwise
// restic's own (1, 3 some source files unreadable: an incomplete backup, 10 no repository, 11 locked, 12 wrong
// password), or 1.
import { writeFile } from "node:fs/promises";
import { pino, type Logger } from "pino";
import { resticEnvironment } from "../../lib/restic/args.ts";
import { splitEnvironment } from "../../lib/restic/secret-env.ts";
import { makeRedactor, repositoryLocation, secretValues, type Redactor } from "../../lib/restic/redact.ts";
import { encodeResult, outcomeOf, workerCommands, type WorkerCommand, type WorkerResult } from "../../lib/restic/result.ts";
import { backup } from "./commands/backup.ts";
import { check } from "./commands/check.ts";
import { prune } from "./commands/prune.ts";
import { restore } from "./commands/restore.ts";
import type { CommandResult, WorkerContext } from "./commands/shared.ts";
import { unlock } from "./commands/unlock.ts";
import { snapshots } from "./commands/snapshots.ts";
import { ConfigError, parseConfig, terminationMessagePath, type WorkerConfig } from "./config.ts";
import { ProgressReporter } from "./progress.ts";
import { ResticRunner, ResticSpawnError } from "./restic.ts";

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Runs one command to its result. Never throws: every failure becomes a result with a reason. (A SIGTERM that
 * arrives after restic finished does not turn a finished backup into a cancelled one: the snapshot exists.)
 */
export async function runWorker(command: WorkerCommand, given: Env, cancel: AbortSignal, log: Logger): Promise<CommandResult> {
  // The repository Secret's keys arrive prefixed; only restic's repository variables among them are taken.
  const { env, refused } = splitEnvironment(given);
  // A run for a tenant in a shared repository (REPOSITORY_SHOWN_AS) masks where the repository is, as a secret.
  const hidden = env.REPOSITORY_SHOWN_AS && env.RESTIC_REPOSITORY ? repositoryLocation(env.RESTIC_REPOSITORY) : [];
  const redact = makeRedactor([...secretValues(env), ...hidden]);
  try {
    if (refused.length > 0) throw new ConfigError(refused);
    const config = parseConfig(command, env);
    log.level = config.logLevel;
    return await dispatch(config, context(config, env, cancel, log, redact));
  } catch (error) {
    return failure(error, redact);
  }
}

function failure(error: unknown, redact: Redactor): CommandResult {
  if (error instanceof ConfigError) return { reason: "InvalidConfig", message: redact(error.message) };
  if (error instanceof ResticSpawnError) {
    return { reason: "ResticNotFound", message: `${redact(error.message)}. Set RESTIC_BINARY or put restic on the PATH.` };
  }
  return { reason: "InternalError", message: `The worker failed unexpectedly: ${redact(String(error))}` };
}

function dispatch(config: WorkerConfig, ctx: WorkerContext): Promise<CommandResult> {
  switch (config.command) {
    case "backup":
      return backup(config, ctx);
    case "restore":
      return restore(config, ctx);
    case "prune":
      return prune(config, ctx);
    case "check":
      return check(config, ctx);
    case "unlock":
      return unlock(config, ctx);
    case "snapshots":
      return snapshots(config, ctx);
    default:
      return config satisfies never;
  }
}

function context(config: WorkerConfig, env: Env, cancel: AbortSignal, log: Logger, redact: Redactor): WorkerContext {
  const restic = new ResticRunner({
    binary: config.resticBinary,
    env: resticEnvironment(env),
    redact,
    log,
    cancel,
    unreachableTimeoutMs: config.unreachableTimeoutMs,
  });
  const { sinkUrl, subject, intervalMs, tokenFile } = config.progress;
  const sink = sinkUrl ? { url: sinkUrl, subject, tokenFile } : undefined;
  return { restic, log, progress: (kind) => new ProgressReporter({ kind, intervalMs, log, sink }) };
}

/** The process exit code of a result (see the header). */
export function exitCodeOf(result: Pick<WorkerResult, "outcome" | "reason" | "exitCode">): number {
  switch (result.outcome) {
    case "Succeeded":
    case "Skipped":
      return 0;
    case "Cancelled":
      return 130;
    case "Failed":
      if (result.reason === "InvalidConfig") return 2;
      // Unreadable source files, whatever restic's own code (1 when it read nothing at all): a retry reads no more.
      if (result.reason === "Incomplete") return 3;
      return result.exitCode && result.exitCode > 0 && result.exitCode < 128 ? result.exitCode : 1;
    default:
      return result.outcome satisfies never;
  }
}

// Plain text in the termination message too: without a command there is no result, and the pod's status is where
// someone looking at a failed Job reads first.
async function usage(log: Logger): Promise<never> {
  const text = `Usage: node functions/worker/main.ts <${workerCommands.join("|")}>`;
  log.error(text);
  await writeFile(terminationMessagePath(process.env), text).catch(() => {});
  process.exit(2);
}

function isCommand(value: string | undefined): value is WorkerCommand {
  return (workerCommands as readonly (string | undefined)[]).includes(value);
}

async function main(): Promise<void> {
  // Synchronous writes: the last lines must be out before process.exit, and a worker logs little.
  const log = pino({ base: { component: "walle-worker" }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: true }));
  const command = process.argv[2];
  if (!isCommand(command)) return usage(log);

  const cancel = new AbortController();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      if (!cancel.signal.aborted) log.warn(`Received ${signal}; stopping restic.`);
      cancel.abort();
    });
  }

  const startedAt = new Date().toISOString();
  const found = await runWorker(command, process.env, cancel.signal, log.child({ command }));
  const result: WorkerResult = { command, outcome: outcomeOf(found.reason), ...found, startedAt, finishedAt: new Date().toISOString() };

  await report(result, terminationMessagePath(process.env), log);
  process.exit(exitCodeOf(result));
}

async function report(result: WorkerResult, path: string, log: Logger): Promise<void> {
  try {
    await writeFile(path, encodeResult(result));
  } catch (error) {
    log.error({ path, error: String(error) }, "Could not write the termination message.");
  }
  const level = result.outcome === "Failed" ? "error" : result.outcome === "Succeeded" ? "info" : "warn";
  log[level]({ result }, result.message);
}

if (import.meta.main) await main();

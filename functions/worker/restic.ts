// Running restic: the one place the worker starts a process.
//
// Output is decoded line by line (lib/restic/lines.ts) and parsed as restic wrote it (lib/restic/messages.ts);
// whatever of it is shown (messages, log lines) is redacted. The runner stops restic with SIGTERM, the signal
// restic cleans up on (it removes its lock), when the worker is cancelled or when the repository stays unreachable
// too long; restic's own exit code is kept as it is, and the reason the worker stopped it is reported beside it.
import { spawn, type ChildProcess } from "node:child_process";
import type { Logger } from "pino";
import { LineDecoder } from "../../lib/restic/lines.ts";
import { parseLine, type Progress } from "../../lib/restic/messages.ts";
import type { ResticCommand, ResticRunFacts } from "../../lib/restic/outcome.ts";
import type { Redactor } from "../../lib/restic/redact.ts";
import { BackendRetryWatch } from "../../lib/restic/retry-watch.ts";

export interface ResticInvocation {
  command: ResticCommand;
  args: readonly string[];
  cwd?: string;
  /** stdout is data to read back (`snapshots --json`, `forget --json`), not lines to log. */
  keepStdout?: boolean;
  onProgress?: (progress: Progress) => void;
  /**
   * restic's stdin (`backup --stdin`): written by `feed`, and closed when it resolves, so restic saves what it got.
   * When it rejects, stdin stays open and restic is stopped instead: it saves nothing (it cancels the snapshot).
   */
  feed?: (stdin: NodeJS.WritableStream) => Promise<void>;
}

export interface ResticRun {
  facts: ResticRunFacts;
  /** The last `summary` message, not yet validated: its shape depends on the command. */
  summary?: Record<string, unknown>;
  /** stdout lines, when the invocation keeps them. */
  stdout: string[];
}

export interface ResticRunnerOptions {
  binary: string;
  env: Record<string, string>;
  redact: Redactor;
  log: Logger;
  /** Aborted on SIGTERM: restic is stopped, and no further run starts. */
  cancel: AbortSignal;
  unreachableTimeoutMs: number;
  now?: () => number;
}

/** restic could not be started at all (not installed, not executable). */
export class ResticSpawnError extends Error {
  override name = "ResticSpawnError";
}

// Enough to classify and explain a failure; a backup of a tree full of unreadable files must not fill the memory
// or the log with one line per file.
const keptLines = 200;
const loggedErrors = 20;
// After SIGTERM restic removes its lock and exits within seconds; this is only a guard against a hung process.
const killAfterMs = 25_000;

export class ResticRunner {
  readonly #o: ResticRunnerOptions;
  readonly #now: () => number;

  constructor(options: ResticRunnerOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  run(inv: ResticInvocation): Promise<ResticRun> {
    if (this.#o.cancel.aborted) {
      return Promise.resolve({ facts: { command: inv.command, exitCode: null, stoppedBy: "cancel", errors: [], stderr: [] }, stdout: [] });
    }
    this.#o.log.debug({ args: inv.args.map(this.#o.redact), cwd: inv.cwd }, `Started restic ${inv.command}.`);
    return new Promise((resolve, reject) => {
      const child = spawn(this.#o.binary, inv.args, { cwd: inv.cwd, env: this.#o.env, stdio: [inv.feed ? "pipe" : "ignore", "pipe", "pipe"] });
      const state = new RunState(inv, this.#o, this.#now);
      const stop = (why: "cancel" | "unreachable" | "input") => state.stop(child, why);
      if (inv.feed && child.stdin) {
        const stdin = child.stdin;
        // restic gone before its input ended: the write fails, which its own exit already says.
        stdin.on("error", () => {});
        inv.feed(stdin).then(
          () => stdin.end(),
          (err: unknown) => {
            // restic that ended first (it found no repository, say) ended for its own reason, not for its input's.
            if (child.exitCode !== null || child.signalCode !== null) return;
            state.inputFailed(err instanceof Error ? err.message : String(err));
            stop("input");
          },
        );
      }
      const onCancel = () => stop("cancel");
      this.#o.cancel.addEventListener("abort", onCancel, { once: true });
      // Both are pipes (stdio above); the types cannot say so once stdin's mode depends on the invocation.
      if (child.stdout) pipeLines(child.stdout, (line) => state.stdoutLine(line));
      if (child.stderr) pipeLines(child.stderr, (line) => state.stderrLine(line, () => stop("unreachable")));
      child.once("error", (error) => {
        this.#o.cancel.removeEventListener("abort", onCancel);
        state.dispose();
        reject(new ResticSpawnError(`restic could not be started as "${this.#o.binary}": ${error.message}`, { cause: error }));
      });
      child.once("close", (code, signal) => {
        this.#o.cancel.removeEventListener("abort", onCancel);
        state.dispose();
        resolve(state.finish(code, signal));
      });
    });
  }
}

function pipeLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  const decoder = new LineDecoder();
  stream.on("data", (chunk: Buffer) => decoder.push(chunk).forEach(onLine));
  stream.on("end", () => decoder.end().forEach(onLine));
}

/** What one run has seen so far. */
class RunState {
  readonly #inv: ResticInvocation;
  readonly #o: ResticRunnerOptions;
  readonly #now: () => number;
  readonly #watch = new BackendRetryWatch();
  readonly #errors: string[] = [];
  readonly #stderr: string[] = [];
  readonly #stdout: string[] = [];
  #errorCount = 0;
  #finalMessage: string | undefined;
  #summary: Record<string, unknown> | undefined;
  #stoppedBy: "cancel" | "unreachable" | "input" | undefined;
  #inputError: string | undefined;
  #unreachableTimer: NodeJS.Timeout | undefined;
  #killTimer: NodeJS.Timeout | undefined;

  constructor(inv: ResticInvocation, o: ResticRunnerOptions, now: () => number) {
    this.#inv = inv;
    this.#o = o;
    this.#now = now;
  }

  // Each line is parsed as restic wrote it, and only what is shown (messages, log lines) is redacted: masking a
  // secret inside JSON first would corrupt it whenever the secret is short or common ("a", "json", a digit).
  stdoutLine(raw: string): void {
    const redact = this.#o.redact;
    const parsed = parseLine(raw);
    switch (parsed.kind) {
      case "status":
        this.#inv.onProgress?.(parsed.progress);
        return;
      case "summary":
        this.#summary = parsed.value;
        return;
      case "exitError":
        this.#finalMessage = redact(parsed.message);
        return;
      case "error":
        this.#error(redact(parsed.message));
        return;
      case "other":
        this.#o.log.debug({ restic: redact(JSON.stringify(parsed.value)) }, `restic ${this.#inv.command} reported ${parsed.messageType}.`);
        return;
      case "text": {
        // Kept stdout is parsed by the command (a snapshot list, forget's report), so it stays as restic wrote it.
        if (this.#inv.keepStdout) this.#stdout.push(raw);
        else if (parsed.text.trim()) {
          const text = redact(parsed.text);
          this.#o.log.info({ restic: text }, `restic ${this.#inv.command}: ${text}`);
        }
        return;
      }
      default:
        return parsed satisfies never;
    }
  }

  stderrLine(raw: string, onUnreachable: () => void): void {
    const parsed = parseLine(raw);
    if (parsed.kind === "exitError") {
      this.#finalMessage = this.#o.redact(parsed.message);
    } else if (parsed.kind === "error") {
      this.#error(this.#o.redact(parsed.message));
    } else if (parsed.kind === "text" && parsed.text.trim()) {
      const text = this.#o.redact(parsed.text);
      if (this.#stderr.length < keptLines) this.#stderr.push(text);
      this.#o.log.warn({ restic: text }, `restic ${this.#inv.command}: ${text}`);
      this.#watchBackend(text, onUnreachable);
    }
  }

  #error(message: string): void {
    this.#errorCount++;
    if (this.#errors.length < keptLines) this.#errors.push(message);
    if (this.#errorCount <= loggedErrors) this.#o.log.warn({ restic: message }, `restic ${this.#inv.command} could not process an item: ${message}`);
    if (this.#errorCount === loggedErrors + 1) {
      this.#o.log.warn(`restic ${this.#inv.command} reported more errors; only the count is kept from here on.`);
    }
  }

  // Arms one timer for the moment the backend will have failed for the whole limit; a success in between
  // resets the watch, so the timer then finds it not exhausted and re-arms on the next failure.
  #watchBackend(line: string, onUnreachable: () => void): void {
    this.#watch.observe(line, this.#now());
    const since = this.#watch.failingSince;
    if (since === undefined || this.#unreachableTimer) return;
    const check = () => {
      this.#unreachableTimer = undefined;
      if (this.#watch.exhausted(this.#now(), this.#o.unreachableTimeoutMs)) onUnreachable();
      else if (this.#watch.failingSince !== undefined) this.#unreachableTimer = setTimeout(check, this.#remaining());
    };
    this.#unreachableTimer = setTimeout(check, this.#remaining());
  }

  #remaining(): number {
    return Math.max(0, (this.#watch.failingSince ?? this.#now()) + this.#o.unreachableTimeoutMs - this.#now());
  }

  inputFailed(message: string): void {
    this.#inputError ??= message;
  }

  stop(child: ChildProcess, why: "cancel" | "unreachable" | "input"): void {
    if (this.#stoppedBy || child.exitCode !== null) return;
    this.#stoppedBy = why;
    const because =
      why === "cancel" ? "the worker was asked to stop" : why === "input" ? `its input failed: ${this.#inputError ?? ""}` : "the repository stayed unreachable";
    this.#o.log.warn(`Stopping restic ${this.#inv.command}: ${because}.`);
    child.kill("SIGTERM");
    this.#killTimer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    this.#killTimer.unref();
  }

  dispose(): void {
    clearTimeout(this.#unreachableTimer);
    clearTimeout(this.#killTimer);
  }

  finish(code: number | null, signal: NodeJS.Signals | null): ResticRun {
    // restic 0.14 prints no exit_error JSON: its last lines of stderr say why it failed.
    const finalMessage = this.#finalMessage ?? (code !== 0 ? this.#stderr.slice(-5).join("\n") : undefined);
    const facts: ResticRunFacts = {
      command: this.#inv.command,
      exitCode: code,
      signal,
      stoppedBy: this.#stoppedBy,
      finalMessage,
      errors: this.#errors,
      errorCount: this.#errorCount,
      stderr: this.#stderr,
      lastRetryError: this.#watch.lastError,
      ...(this.#inputError !== undefined ? { inputError: this.#inputError } : {}),
    };
    this.#o.log.debug({ exitCode: code, signal }, `restic ${this.#inv.command} exited.`);
    return { facts, summary: this.#summary, stdout: this.#stdout };
  }
}

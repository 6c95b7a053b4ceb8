// What one restic run means to a user: a reason (result.ts) and a message that says what to do.
//
// The exit code decides wherever restic gives one that means something (0, 3, 10, 11, 12, 130). restic 0.18 still
// exits 1 for many different failures (an unreachable server, a refused login, an append-only server refusing a
// delete), and restic 0.14 exits 1 for all of them, so for exit 1 the rules below read restic's final message.
// That is the only place the worker branches on message text, and each pattern is restic's own wording.
import { exitMeaning, ResticExit } from "./exit-codes.ts";
import type { Reason } from "./result.ts";

/** A restic subcommand the worker runs. */
export type ResticCommand = "backup" | "init" | "restore" | "snapshots" | "forget" | "prune" | "check" | "unlock";

/** What the worker saw of one restic run. All text is already redacted. */
export interface ResticRunFacts {
  command: ResticCommand;
  exitCode: number | null;
  signal?: string | null;
  /** The worker stopped restic itself: on SIGTERM, or because the backend stayed unreachable. */
  stoppedBy?: "cancel" | "unreachable";
  /** restic's final message: its `exit_error` JSON, or (restic 0.14) its last lines of stderr text. */
  finalMessage?: string;
  /** The errors restic reported on the way as JSON items: for backup, each file it could not read. */
  errors: readonly string[];
  /** How many errors there were in all; `errors` keeps only the first ones. Default: their number. */
  errorCount?: number;
  /** restic's other stderr lines, as text: warnings, backend retries, forget's failed deletes. */
  stderr: readonly string[];
  /** The last backend error restic was retrying when the worker stopped it. */
  lastRetryError?: string;
}

/** What the messages may name, beyond the facts. */
export interface VerdictContext {
  /** The repository location, redacted; absent when it comes from RESTIC_REPOSITORY_FILE. */
  repository?: string;
  lockWait?: string;
  unreachableTimeout?: string;
}

export interface Verdict {
  reason: Reason;
  message: string;
}

const patterns = {
  wrongPassword: /wrong password or no key found/i,
  locked: /repository is already locked/i,
  unauthorized: /\b401\b.*Unauthorized|Unauthorized.*\b401\b/i,
  forbidden: /\b403\b.*Forbidden|Forbidden.*\b403\b|AccessDenied/i,
  unreachable:
    /dial tcp|connection refused|no such host|i\/o timeout|network is unreachable|no route to host|TLS handshake timeout|connection reset by peer|server misbehaving/i,
  // restic 0.14 for a missing repository (0.17 and later exit 10); checked after 401/403, which print it too.
  noRepository: /Is there a repository at the following location\?/i,
  noSnapshot: /no matching ID found|no snapshot found|failed to find snapshot/i,
  // forget reports a snapshot it could not delete and still exits 0.
  failedRemove: /unable to remove .* from the repository/i,
} as const;

type Rule = (facts: ResticRunFacts, text: string, ctx: VerdictContext) => Verdict | undefined;

const rules: readonly Rule[] = [
  (f) => (f.stoppedBy === "cancel" || f.exitCode === ResticExit.cancelled ? verdict("Cancelled", cancelledMessage) : undefined),
  (f, _t, c) =>
    f.stoppedBy === "unreachable"
      ? verdict("Unreachable", `The repository could not be reached for ${c.unreachableTimeout ?? "too long"}: ${f.lastRetryError ?? "no answer"}.`)
      : undefined,
  (f, t, c) => (f.exitCode === ResticExit.wrongPassword || patterns.wrongPassword.test(t) ? verdict("WrongPassword", wrongPasswordMessage(c)) : undefined),
  (f, _t, c) => (f.exitCode === ResticExit.noRepository ? verdict("NoRepository", noRepositoryMessage(c)) : undefined),
  (f, t, c) => (f.exitCode === ResticExit.lockFailed || patterns.locked.test(t) ? verdict("Locked", lockedMessage(c, t)) : undefined),
  (f) => (f.exitCode === ResticExit.sourceUnreadable ? verdict("SourceUnreadable", unreadableMessage(f)) : undefined),
  (f, t) => (f.exitCode !== 0 && patterns.unauthorized.test(t) ? verdict("Unauthorized", unauthorizedMessage) : undefined),
  (f, t) => (patterns.forbidden.test(t) && (f.exitCode !== 0 || removeFailed(f)) ? verdict("Forbidden", forbiddenMessage) : undefined),
  (f, t) => (f.exitCode !== 0 && patterns.unreachable.test(t) ? verdict("Unreachable", `The repository could not be reached: ${firstLine(t)}`) : undefined),
  (f, t, c) => (f.exitCode !== 0 && patterns.noRepository.test(t) ? verdict("NoRepository", noRepositoryMessage(c)) : undefined),
  (f, t) => (f.exitCode !== 0 && patterns.noSnapshot.test(t) ? verdict("NoSnapshot", `No snapshot matches: ${firstLine(t)}`) : undefined),
  (f) => (f.exitCode === 0 && removeFailed(f) ? verdict("ResticFailed", `restic forget could not delete some snapshots: ${firstFailedRemove(f)}`) : undefined),
  (f) => (f.exitCode === 0 ? verdict("Completed", `restic ${f.command} completed.`) : undefined),
];

/** The reason and message of one restic run. */
export function classify(facts: ResticRunFacts, ctx: VerdictContext = {}): Verdict {
  const text = [facts.finalMessage ?? "", ...(facts.command === "forget" ? facts.stderr : [])].join("\n");
  for (const rule of rules) {
    const found = rule(facts, text, ctx);
    if (found) return found;
  }
  const meaning = exitMeaning(facts.exitCode, facts.signal);
  const detail = firstLine(text);
  return verdict("ResticFailed", `restic ${facts.command} failed (${meaning})${detail ? `: ${detail}` : "."}`);
}

function verdict(reason: Reason, message: string): Verdict {
  return { reason, message };
}

const cancelledMessage = "The worker was asked to stop (SIGTERM); restic was stopped cleanly and the job is cancelled.";

const unauthorizedMessage =
  "The repository server rejected the credentials (HTTP 401 Unauthorized): check the user and password in the repository URL of the Secret.";

const forbiddenMessage =
  "The repository server refused the operation (HTTP 403 Forbidden). An append-only rest-server accepts backups but refuses " +
  "to delete, so forget and prune need an endpoint without --append-only; with --private-repos, the repository path must " +
  "start with the user's name.";

function where(ctx: VerdictContext): string {
  return ctx.repository ? `the repository at ${ctx.repository}` : "the repository";
}

function wrongPasswordMessage(ctx: VerdictContext): string {
  return `The repository password is wrong: no key of ${where(ctx)} opens with it. Check RESTIC_PASSWORD in the repository Secret.`;
}

function noRepositoryMessage(ctx: VerdictContext): string {
  return (
    `There is no restic repository at ${ctx.repository ?? "the configured location"}. ` +
    `Create it with "restic init", or set INITIALIZE_REPO=true in the repository Secret to let Walle create it.`
  );
}

function lockedMessage(ctx: VerdictContext, text: string): string {
  const waited = ctx.lockWait ? ` and stayed locked for ${ctx.lockWait}` : "";
  const holder = /lock was created at .*/.exec(text)?.[0];
  return (
    `${capitalise(where(ctx))} is locked by another restic process${waited}${holder ? ` (${holder})` : ""}. ` +
    "If that process is gone, run the unlock command to remove its stale lock."
  );
}

function unreadableMessage(facts: ResticRunFacts): string {
  const n = facts.errorCount ?? facts.errors.length;
  const first = facts.errors[0];
  return `${n || "Some"} source file${n === 1 ? "" : "s"} could not be read; the snapshot was made without ${n === 1 ? "it" : "them"}${first ? `. First: ${first}` : "."}`;
}

function removeFailed(facts: ResticRunFacts): boolean {
  return facts.command === "forget" && facts.stderr.some((e) => patterns.failedRemove.test(e));
}

function firstFailedRemove(facts: ResticRunFacts): string {
  return facts.stderr.find((e) => patterns.failedRemove.test(e)) ?? "";
}

function firstLine(text: string): string {
  return (
    text
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l.length > 0) ?? ""
  );
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// What one restic run means to a user: a reason (result.ts) and a message that says what to do.
//
// The exit code decides wherever restic gives one that means something (0, 3, 10, 11, 12, 130). restic 0.18 still
// exits 1 for many different failures (an unreachable server, a refused login, an append-only server refusing a
// delete), and restic 0.14 exits 1 for all of them, so for exit 1 the rules below read restic's final message.
// That is the only place the worker branches on message text, and each pattern is restic's own wording.
import { exitMeaning, ResticExit } from "./exit-codes.ts";
import type { Reason } from "./result.ts";

/** A restic subcommand the worker runs. */
export type ResticCommand = "backup" | "init" | "restore" | "snapshots" | "forget" | "prune" | "check" | "unlock" | "list" | "cat";

/** What the worker saw of one restic run. All text is already redacted. */
export interface ResticRunFacts {
  command: ResticCommand;
  exitCode: number | null;
  signal?: string | null;
  /** The worker stopped restic itself: on SIGTERM, because the backend stayed unreachable, or because its input failed. */
  stoppedBy?: "cancel" | "unreachable" | "input";
  /** What went wrong with restic's stdin (a backup of a command's output): the command failed, or its stream broke. */
  inputError?: string;
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
  unreachable: new RegExp(
    [
      "dial tcp",
      "connection refused",
      "no such host",
      "i/o timeout",
      "network is unreachable",
      "no route to host",
      "TLS handshake timeout",
      "connection reset by peer",
      "server misbehaving",
    ].join("|"),
    "i",
  ),
  // restic 0.14 for a missing repository (0.17 and later exit 10); checked after 401/403, which print it too.
  noRepository: /Is there a repository at the following location\?/i,
  noSnapshot: /no matching ID found|no snapshot found|failed to find snapshot/i,
  // rest-server answers 507 when its disk (or quota) is full; a local repository's own write fails with ENOSPC/EDQUOT.
  full: /\b507\b.*Insufficient Storage|Insufficient Storage.*\b507\b|no space left on device|disk quota exceeded/i,
  // backup found nothing it could read: every entry errored, so restic refuses to save an empty snapshot.
  emptySnapshot: /snapshot is empty/i,
  // forget reports a snapshot it could not delete and still exits 0.
  failedRemove: /unable to remove .* from the repository/i,
} as const;

/** One row of the table: when it applies, its reason, and the message. The first row that applies wins. */
interface Rule {
  reason: Reason;
  when(facts: ResticRunFacts, text: string): boolean;
  message(facts: ResticRunFacts, text: string, ctx: VerdictContext): string;
}

const failed = (f: ResticRunFacts) => f.exitCode !== 0;

const rules: readonly Rule[] = [
  {
    // The command whose output restic read failed (or its stream broke): restic was stopped before it saved.
    reason: "CommandFailed",
    when: (f) => f.inputError !== undefined,
    message: (f) => `${(f.inputError ?? "").replace(/\.?$/, ".")} No snapshot was made.`,
  },
  {
    reason: "Cancelled",
    when: (f) => f.stoppedBy === "cancel" || f.exitCode === ResticExit.cancelled,
    message: () => cancelledMessage,
  },
  {
    // restic retries a full server's 507 as it retries an unreachable one, so this comes before Unreachable.
    reason: "RepositoryFull",
    when: (f, t) => (failed(f) || f.stoppedBy === "unreachable") && patterns.full.test(`${f.lastRetryError ?? ""}\n${t}`),
    message: (f, t, c) =>
      `The storage of ${where(c)} is full: ${firstLine(patterns.full.test(f.lastRetryError ?? "") ? (f.lastRetryError ?? "") : t)}. No snapshot was made. ` +
      "Free space on the repository's server (restic prune removes what forget let go, and the data this attempt uploaded) or grow it, then back up again.",
  },
  {
    reason: "Unreachable",
    when: (f) => f.stoppedBy === "unreachable",
    message: (f, _t, c) => `The repository could not be reached for ${c.unreachableTimeout ?? "too long"}: ${f.lastRetryError ?? "no answer"}.`,
  },
  {
    reason: "WrongPassword",
    when: (f, t) => f.exitCode === ResticExit.wrongPassword || patterns.wrongPassword.test(t),
    message: (_f, _t, c) => wrongPasswordMessage(c),
  },
  { reason: "NoRepository", when: (f) => f.exitCode === ResticExit.noRepository, message: (_f, _t, c) => noRepositoryMessage(c) },
  {
    reason: "Locked",
    when: (f, t) => f.exitCode === ResticExit.lockFailed || patterns.locked.test(t),
    message: (_f, t, c) => lockedMessage(c, t),
  },
  { reason: "Incomplete", when: (f) => f.exitCode === ResticExit.sourceUnreadable, message: (f) => unreadableMessage(f) },
  {
    reason: "Incomplete",
    when: (f, t) => f.command === "backup" && failed(f) && f.errors.length > 0 && patterns.emptySnapshot.test(t),
    message: (f) => nothingReadMessage(f),
  },
  { reason: "Unauthorized", when: (f, t) => failed(f) && patterns.unauthorized.test(t), message: () => unauthorizedMessage },
  { reason: "Forbidden", when: (f, t) => patterns.forbidden.test(t) && (failed(f) || removeFailed(f)), message: () => forbiddenMessage },
  {
    reason: "Unreachable",
    when: (f, t) => failed(f) && patterns.unreachable.test(t),
    message: (_f, t) => `The repository could not be reached: ${firstLine(t)}`,
  },
  { reason: "NoRepository", when: (f, t) => failed(f) && patterns.noRepository.test(t), message: (_f, _t, c) => noRepositoryMessage(c) },
  { reason: "NoSnapshot", when: (f, t) => failed(f) && patterns.noSnapshot.test(t), message: (_f, t) => `No snapshot matches: ${firstLine(t)}` },
  {
    reason: "ResticFailed",
    when: (f) => !failed(f) && removeFailed(f),
    message: (f) => `restic forget could not delete some snapshots: ${firstFailedRemove(f)}`,
  },
  { reason: "Completed", when: (f) => !failed(f), message: (f) => `restic ${f.command} completed.` },
];

/** The reason and message of one restic run. */
export function classify(facts: ResticRunFacts, ctx: VerdictContext = {}): Verdict {
  const text = [facts.finalMessage ?? "", ...(facts.command === "forget" ? facts.stderr : [])].join("\n");
  const rule = rules.find((r) => r.when(facts, text));
  if (rule) return { reason: rule.reason, message: rule.message(facts, text, ctx) };
  const detail = firstLine(text);
  return { reason: "ResticFailed", message: `restic ${facts.command} failed (${exitMeaning(facts.exitCode, facts.signal)})${detail ? `: ${detail}` : "."}` };
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
  const files = `${n || "Some"} source file${n === 1 ? "" : "s"}`;
  return `${files} could not be read; the snapshot was made without ${n === 1 ? "it" : "them"}${first ? `. First: ${first}` : "."}`;
}

function nothingReadMessage(facts: ResticRunFacts): string {
  const n = facts.errorCount ?? facts.errors.length;
  return `No source file could be read (${n} error${n === 1 ? "" : "s"}), so no snapshot was made. First: ${facts.errors[0] ?? ""}`;
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

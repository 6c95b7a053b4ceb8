// The worker's result, as it writes it to the container's termination message and as the reconcile function reads
// it back from the pod's `status.containerStatuses[].state.terminated.message`.
//
// Kubernetes keeps at most 4096 bytes of a termination message (and 12 KiB across all containers of a pod), so
// the JSON is compact, optional parts are left out rather than null, and the one free-text field, `message`, is
// shortened until the whole fits.
import { z } from "zod";

export const workerCommands = ["backup", "restore", "prune", "check", "unlock", "snapshots"] as const;
export const WorkerCommand = z.enum(workerCommands);
export type WorkerCommand = z.infer<typeof WorkerCommand>;

/** The coarse result, as a condition status would show it. */
export const Outcome = z.enum(["Succeeded", "Skipped", "Cancelled", "Failed"]);
export type Outcome = z.infer<typeof Outcome>;

/**
 * Why, in Kubernetes' CamelCase reason style, so reconcile can copy it into a condition. Each failure a user must
 * act on differently has its own reason.
 */
export const Reason = z.enum([
  "Completed",
  /** A snapshot was made, but some source files could not be read: a backup that is not whole is a failure. */
  "Incomplete",
  "CommandFailed",
  "EmptySource",
  "Cancelled",
  "InvalidConfig",
  "ResticNotFound",
  "NoRepository",
  "WrongPassword",
  "Locked",
  "Unreachable",
  /** The repository's storage is full (rest-server's 507 Insufficient Storage, or ENOSPC). */
  "RepositoryFull",
  "Unauthorized",
  "Forbidden",
  "NoSnapshot",
  "ResticFailed",
  "InternalError",
]);
export type Reason = z.infer<typeof Reason>;

/** Each reason has exactly one outcome, so the two fields can never disagree. */
export function outcomeOf(reason: Reason): Outcome {
  switch (reason) {
    case "Completed":
      return "Succeeded";
    case "EmptySource":
      return "Skipped";
    case "Cancelled":
      return "Cancelled";
    case "Incomplete":
    case "CommandFailed":
    case "InvalidConfig":
    case "ResticNotFound":
    case "NoRepository":
    case "WrongPassword":
    case "Locked":
    case "Unreachable":
    case "RepositoryFull":
    case "Unauthorized":
    case "Forbidden":
    case "NoSnapshot":
    case "ResticFailed":
    case "InternalError":
      return "Failed";
    default:
      return unreachable(reason);
  }
}

function unreachable(value: never): never {
  throw new Error(`Unhandled value ${String(value)}`);
}

const count = z.number().int().nonnegative();

export const BackupStats = z.object({
  filesNew: count,
  filesChanged: count,
  filesUnmodified: count,
  dataAdded: count,
  bytesProcessed: count,
  durationSeconds: z.number().nonnegative(),
  /** Source files restic could not read (exit code 3). */
  unreadable: count.optional(),
});
export type BackupStats = z.infer<typeof BackupStats>;

export const RestoreStats = z.object({ files: count, bytes: count });
export type RestoreStats = z.infer<typeof RestoreStats>;

export const ForgetStats = z.object({ kept: count, removed: count });
export type ForgetStats = z.infer<typeof ForgetStats>;

/** One snapshot as the snapshots command lists it: the short id restic prints, its time, host and size. */
export const SnapshotEntry = z.object({
  id: z.string().regex(/^[0-9a-f]{8}$/),
  time: z.string(),
  host: z.string(),
  /** Bytes the backup read (restic's summary.total_bytes_processed), when restic recorded it. */
  bytes: count.optional(),
});
export type SnapshotEntry = z.infer<typeof SnapshotEntry>;

/** The most snapshots one result lists, newest first, so that it fits the termination message. */
export const listedSnapshotsLimit = 30;

export const WorkerResult = z
  .object({
    command: WorkerCommand,
    outcome: Outcome,
    reason: Reason,
    /** One or two sentences for a person: what happened and, on failure, what to do. Never holds a secret. */
    message: z.string(),
    snapshotId: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional(),
    /** restic's exit code (null: ended by a signal) and its meaning; absent when restic never ran. */
    exitCode: z.number().int().nullable().optional(),
    exitMeaning: z.string().optional(),
    backup: BackupStats.optional(),
    restore: RestoreStats.optional(),
    forget: ForgetStats.optional(),
    snapshots: z.array(SnapshotEntry).max(listedSnapshotsLimit).optional(),
    /** How many snapshots there are in all, when more than the list holds. */
    snapshotsTotal: count.optional(),
    startedAt: z.iso.datetime(),
    finishedAt: z.iso.datetime(),
  })
  .refine((r) => r.outcome === outcomeOf(r.reason), { message: "outcome does not match reason", path: ["outcome"] });
export type WorkerResult = z.infer<typeof WorkerResult>;

/** The most Kubernetes keeps of one container's termination message. */
export const terminationMessageLimit = 4096;

/** Compact JSON of a result, within the termination message limit (the message is shortened when needed). */
export function encodeResult(result: WorkerResult): string {
  const json = JSON.stringify(result);
  if (byteLength(json) <= terminationMessageLimit) return json;
  // A list too long (long host names) loses its oldest entries before the message loses a word.
  const listed = result.snapshots;
  if (listed && listed.length > 0) {
    const fewer = listed.slice(0, -1);
    return encodeResult({ ...result, snapshots: fewer, snapshotsTotal: result.snapshotsTotal ?? listed.length });
  }
  // The longest prefix of the message that fits, found by bisection: a character may take one byte or six once
  // UTF-8 encoded and JSON escaped, so its length in characters says little.
  const chars = [...result.message];
  const withPrefix = (n: number) => JSON.stringify({ ...result, message: n > 0 ? `${chars.slice(0, n).join("")}…` : "" });
  let fits = 0;
  let tooLong = chars.length;
  while (tooLong - fits > 1) {
    const mid = Math.floor((fits + tooLong) / 2);
    if (byteLength(withPrefix(mid)) <= terminationMessageLimit) fits = mid;
    else tooLong = mid;
  }
  return withPrefix(fits);
}

function byteLength(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** A termination message read back; an error names what is wrong with it. */
export function decodeResult(text: string): { ok: true; result: WorkerResult } | { ok: false; error: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, error: "The termination message is not JSON." };
  }
  const parsed = WorkerResult.safeParse(json);
  if (parsed.success) return { ok: true, result: parsed.data };
  return { ok: false, error: `The termination message is not a worker result: ${z.prettifyError(parsed.error)}` };
}

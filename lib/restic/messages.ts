// restic's `--json` messages, parsed at the boundary with zod (docs/architecture.md, restic).
//
// Every line is either a JSON object with a `message_type` or plain text (restic still writes some warnings, the
// backend's retry notices and all of restic 0.14's errors as text). A line that claims a known type but does not
// have its shape is treated as text, so one odd line can never end a backup.
import { z } from "zod";
import type { ProgressData } from "./progress.ts";

const count = z.number().int().nonnegative();

const Status = z.object({
  message_type: z.literal("status"),
  percent_done: z.number().default(0),
  seconds_elapsed: count.optional(),
  seconds_remaining: count.optional(),
  total_files: count.optional(),
  total_bytes: count.optional(),
  // backup counts what it has read; restore what it has written.
  files_done: count.optional(),
  bytes_done: count.optional(),
  files_restored: count.optional(),
  bytes_restored: count.optional(),
  error_count: count.optional(),
});

const ErrorItem = z.object({
  message_type: z.literal("error"),
  error: z.object({ message: z.string() }),
  during: z.string().optional(),
  item: z.string().optional(),
});

const ExitError = z.object({ message_type: z.literal("exit_error"), code: z.number().int(), message: z.string() });

/** The summary of `restic backup --json`; `snapshot_id` is absent when no snapshot was written. */
export const BackupSummary = z.object({
  message_type: z.literal("summary"),
  files_new: count,
  files_changed: count,
  files_unmodified: count,
  data_added: count,
  total_bytes_processed: count,
  total_duration: z.number().nonnegative(),
  snapshot_id: z.string().optional(),
});
export type BackupSummary = z.infer<typeof BackupSummary>;

/** The summary of `restic restore --json`. */
export const RestoreSummary = z.object({
  message_type: z.literal("summary"),
  total_files: count.default(0),
  files_restored: count.default(0),
  total_bytes: count.default(0),
  bytes_restored: count.default(0),
  seconds_elapsed: count.optional(),
});
export type RestoreSummary = z.infer<typeof RestoreSummary>;

/** Progress, the same for backup and restore; also the data of the worker's progress events (progress.ts). */
export type Progress = ProgressData;

export type ResticLine =
  | { kind: "status"; progress: Progress }
  | { kind: "summary"; value: Record<string, unknown> }
  | { kind: "error"; message: string; item?: string }
  | { kind: "exitError"; code: number; message: string }
  | { kind: "other"; messageType: string; value: Record<string, unknown> }
  | { kind: "text"; text: string };

const Envelope = z.looseObject({ message_type: z.string() });

// ESC [ … letter: restic writes "clear line" codes before some messages even when its output is a pipe.
// eslint-disable-next-line no-control-regex
const ansiEscape = /\u001b\[[0-9;?]*[A-Za-z]/g;

/** One line of restic's output, classified. */
export function parseLine(line: string): ResticLine {
  const text = line.replace(ansiEscape, "");
  const json = jsonObject(text);
  if (json === undefined) return { kind: "text", text };
  const envelope = Envelope.safeParse(json);
  if (!envelope.success) return { kind: "text", text };
  return typed(envelope.data) ?? { kind: "text", text };
}

function typed(value: z.infer<typeof Envelope>): ResticLine | undefined {
  switch (value.message_type) {
    case "status": {
      const status = Status.safeParse(value);
      return status.success ? { kind: "status", progress: toProgress(status.data) } : undefined;
    }
    case "summary":
      return { kind: "summary", value };
    case "error": {
      const error = ErrorItem.safeParse(value);
      return error.success ? { kind: "error", message: error.data.error.message, item: error.data.item } : undefined;
    }
    case "exit_error": {
      const exit = ExitError.safeParse(value);
      return exit.success ? { kind: "exitError", code: exit.data.code, message: exit.data.message } : undefined;
    }
    default:
      return { kind: "other", messageType: value.message_type, value };
  }
}

function jsonObject(text: string): unknown {
  if (!text.startsWith("{")) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function toProgress(s: z.infer<typeof Status>): Progress {
  return dropUndefined({
    // restic divides bytes read by bytes found; a file that grows during the backup can take it past 1.
    percentDone: Math.min(1, Math.max(0, s.percent_done)),
    filesDone: s.files_done ?? s.files_restored,
    totalFiles: s.total_files,
    bytesDone: s.bytes_done ?? s.bytes_restored,
    totalBytes: s.total_bytes,
    secondsElapsed: s.seconds_elapsed,
    secondsRemaining: s.seconds_remaining,
  });
}

/** A copy without the keys whose value is undefined, so compact JSON stays compact. */
export function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

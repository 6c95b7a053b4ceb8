// The progress CloudEvents the worker POSTs to PROGRESS_SINK_URL (binary mode), as the reconcile function reads
// them: `type` names the operation, `subject` is the worker's PROGRESS_SUBJECT (the object to update), and `data`
// is the progress below, as JSON.
import { z } from "zod";

export const progressKinds = ["backup", "restore"] as const;
export type ProgressKind = (typeof progressKinds)[number];

export const progressEventSource = "/walle/worker";

export function progressEventType(kind: ProgressKind): string {
  return `io.ros.walle.${kind}.progress`;
}

const count = z.number().int().nonnegative();

export const ProgressData = z.object({
  /** From 0 to 1. */
  percentDone: z.number().min(0).max(1),
  filesDone: count.optional(),
  totalFiles: count.optional(),
  bytesDone: count.optional(),
  totalBytes: count.optional(),
  secondsElapsed: count.optional(),
  secondsRemaining: count.optional(),
});
export type ProgressData = z.infer<typeof ProgressData>;

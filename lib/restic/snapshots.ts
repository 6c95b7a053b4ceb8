// Snapshot lists from `restic snapshots --json` and `restic forget --json`, and the choice of what to restore.
import { z } from "zod";

export const Snapshot = z.object({
  id: z.string().regex(/^[0-9a-f]{64}$/),
  short_id: z.string().optional(),
  time: z.string().refine((t) => !Number.isNaN(Date.parse(t)), "must be a time"),
  hostname: z.string(),
  tags: z.array(z.string()).nullish(),
  paths: z.array(z.string()).nullish(),
  /** What the backup did (restic 0.17 and later record it in the snapshot). */
  summary: z.object({ total_bytes_processed: z.number().int().nonnegative().optional() }).nullish(),
});
export type Snapshot = z.infer<typeof Snapshot>;

export const SnapshotList = z.array(Snapshot);

/** One group of `forget --json`: what the policy kept and what it removed. */
export const ForgetGroup = z.object({
  host: z.string().nullish(),
  tags: z.array(z.string()).nullish(),
  keep: z.array(Snapshot).nullish(),
  remove: z.array(Snapshot).nullish(),
});
export const ForgetReport = z.array(ForgetGroup);
export type ForgetReport = z.infer<typeof ForgetReport>;

/**
 * The snapshot to restore from a list restic already filtered by host and tags: the newest, or the newest taken
 * at or before `before`. Equal times (two backups in the same second) are broken by id, so the choice does not
 * depend on the order restic lists them in.
 */
export function selectSnapshot(snapshots: readonly Snapshot[], before?: Date): Snapshot | undefined {
  const limit = before?.getTime() ?? Number.POSITIVE_INFINITY;
  let best: Snapshot | undefined;
  for (const s of snapshots) {
    const t = Date.parse(s.time);
    if (t > limit) continue;
    if (!best || t > Date.parse(best.time) || (t === Date.parse(best.time) && s.id > best.id)) best = s;
  }
  return best;
}

/** Newest first, by time and then id, as `kubectl walle snapshots` lists them. */
export function newestFirst(snapshots: readonly Snapshot[]): Snapshot[] {
  return [...snapshots].sort((a, b) => Date.parse(b.time) - Date.parse(a.time) || b.id.localeCompare(a.id));
}

/** Counts of a forget run across its groups. */
export function forgetCounts(report: ForgetReport): { kept: number; removed: number } {
  let kept = 0;
  let removed = 0;
  for (const group of report) {
    kept += group.keep?.length ?? 0;
    removed += group.remove?.length ?? 0;
  }
  return { kept, removed };
}

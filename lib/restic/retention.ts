// The retention policy of a BackupSchedule's `prune.retain`, and the `restic forget --keep-*` flags it means.
import { z } from "zod";

/** A restic duration such as `1y5m7d2h` (years, months, days, hours; each optional, in that order). */
export const resticDuration = z
  .string()
  .regex(/^(?=\d)(\d+y)?(\d+m)?(\d+d)?(\d+h)?$/, "must be a restic duration of years, months, days and hours, such as 1y6m, 14d or 36h")
  .describe("A restic duration: years, months, days and hours, such as 1y6m or 36h.");

const count = z.number().int().min(1).describe("How many snapshots of this kind to keep.");

// `.strict()`: a misspelt key (`dayly`) must be an error, not a policy that silently keeps fewer snapshots.
export const Retention = z
  .object({
    last: count.optional(),
    hourly: count.optional(),
    daily: count.optional(),
    weekly: count.optional(),
    monthly: count.optional(),
    yearly: count.optional(),
    within: resticDuration.optional(),
  })
  .strict();

export type Retention = z.infer<typeof Retention>;

// The order restic itself lists the flags in, so the command line reads the way restic's docs do.
const countFlags = [
  ["last", "--keep-last"],
  ["hourly", "--keep-hourly"],
  ["daily", "--keep-daily"],
  ["weekly", "--keep-weekly"],
  ["monthly", "--keep-monthly"],
  ["yearly", "--keep-yearly"],
] as const satisfies ReadonlyArray<readonly [keyof Retention, string]>;

/** The `--keep-*` flags of a policy; empty when the policy keeps nothing by rule. */
export function keepFlags(policy: Retention): string[] {
  const flags: string[] = [];
  for (const [key, flag] of countFlags) {
    const n = policy[key];
    if (n !== undefined) flags.push(flag, String(n));
  }
  if (policy.within !== undefined) flags.push("--keep-within", policy.within);
  return flags;
}

/** restic refuses `forget` without a rule ("no policy was specified"); so does the worker, before running it. */
export function isEmptyPolicy(policy: Retention): boolean {
  return keepFlags(policy).length === 0;
}

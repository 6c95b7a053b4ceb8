// When a cron schedule is next due, evaluated by croner with the schedule's time zone. The shape of the
// expression is checked at admission (lib/api/cron.ts, as CEL); what a shape cannot show (31 February, a zone
// that does not exist) shows here, as a message the schedule's status can carry. Time is a parameter.
import { Cron } from "croner";

export type CronNext = { readonly next: Date } | { readonly error: string };

/** The first time after `after` that `expression` (5 fields or a macro such as @daily) names, in `timezone`. */
export function nextCronRun(expression: string, timezone: string | undefined, after: Date): CronNext {
  let cron: Cron;
  try {
    cron = new Cron(expression, { mode: "5-part", paused: true, ...(timezone ? { timezone } : {}) });
  } catch (err) {
    return { error: `schedule ${JSON.stringify(expression)} is not a valid cron expression: ${(err as Error).message}` };
  }
  let next: Date | null;
  try {
    next = cron.nextRun(after);
  } catch (err) {
    return { error: `schedule ${JSON.stringify(expression)} cannot be evaluated in time zone ${timezone ?? "UTC"}: ${(err as Error).message}` };
  } finally {
    cron.stop();
  }
  return next ? { next } : { error: `schedule ${JSON.stringify(expression)} never comes due` };
}

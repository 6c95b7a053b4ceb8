// When a schedule's work is due, decided from its spec, its status and the time passed in. An interval runs on a
// grid that starts at the schedule's first run; a cron schedule at the instants croner names in its time zone.
// After downtime only the latest missed slot runs (one catch-up, never a burst), and each slot has an id, so the
// BackupSet made for it has a deterministic name and a second tick in the same window meets AlreadyExists.
import { Cron } from "croner";

const UNIT_SECONDS = { s: 1, m: 60, h: 3_600, d: 86_400, w: 604_800 } as const;

/** The original's interval syntax in seconds: digits and a unit, repeated (`6h`, `1h30m`, `2w`); undefined if not one. */
export function intervalSeconds(text: string): number | undefined {
  if (!/^(\d+[smhdw])+$/.test(text)) return undefined;
  let total = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)([smhdw])/g)) total += Number(n) * UNIT_SECONDS[unit as keyof typeof UNIT_SECONDS];
  return total > 0 ? total : undefined;
}

/** How a task comes due: every `interval`, or at the instants of a cron expression. */
export type Timing = { readonly interval: string } | { readonly cron: string; readonly timezone?: string };

export interface Due {
  /** The slot to run now, when one is due: the latest slot at or before now that has not run. */
  readonly slot?: Date;
  /** Slots that came due while nothing ran, folded into this one; 0 when the tick was on time. */
  readonly missed: number;
  /** When the next slot comes after now. */
  readonly next?: Date;
  /** Why the timing cannot be evaluated (an interval or a zone admission could not check). */
  readonly error?: string;
}

/** Missed slots are counted up to this many; a cron every minute that was down for a year says "at least". */
const MAX_COUNTED = 1_000;

/**
 * The slot due at `now`. `last` is the slot that last ran (status.scheduler), `first` the first instant the task
 * may run: with no `last`, an interval task with `runAtFirst` runs at `first` (a new backup schedule starts at
 * once, as in the original), otherwise its first slot is one interval later; a cron task runs at its first
 * instant after `first`.
 */
export function dueSlot(timing: Timing, last: Date | undefined, first: Date, now: Date, runAtFirst = false): Due {
  return "interval" in timing ? dueByInterval(timing.interval, last, first, now, runAtFirst) : dueByCron(timing.cron, timing.timezone, last ?? first, now);
}

function dueByInterval(interval: string, last: Date | undefined, first: Date, now: Date, runAtFirst: boolean): Due {
  const seconds = intervalSeconds(interval);
  if (seconds === undefined) return { missed: 0, error: `interval ${JSON.stringify(interval)} is not digits followed by s, m, h, d or w` };
  const step = seconds * 1000;
  const origin = wholeSecond(first);
  if (!last && runAtFirst) {
    if (now < origin) return { missed: 0, next: origin };
    const slots = Math.floor((now.getTime() - origin.getTime()) / step);
    const slot = new Date(origin.getTime() + slots * step);
    return { slot, missed: slots, next: new Date(slot.getTime() + step) };
  }
  const base = last ?? origin;
  const slots = Math.floor((now.getTime() - base.getTime()) / step);
  if (slots < 1) return { missed: 0, next: new Date(base.getTime() + step) };
  const slot = new Date(base.getTime() + slots * step);
  return { slot, missed: slots - 1, next: new Date(slot.getTime() + step) };
}

function dueByCron(expression: string, timezone: string | undefined, after: Date, now: Date): Due {
  let cron: Cron;
  try {
    cron = new Cron(expression, { mode: "5-part", paused: true, ...(timezone ? { timezone } : {}) });
  } catch (err) {
    return { missed: 0, error: `schedule ${JSON.stringify(expression)} is not a valid cron expression: ${(err as Error).message}` };
  }
  try {
    const first = cron.nextRun(after);
    if (!first) return { missed: 0, error: `schedule ${JSON.stringify(expression)} never comes due` };
    if (first > now) return { missed: 0, next: first };
    // The latest instant at or before now; the ones between `after` and it were missed.
    const [latest = first] = cron.previousRuns(1, new Date(now.getTime() + 1000));
    const slot = latest < first ? first : latest;
    let missed = 0;
    for (let t: Date | null = first; t && t < slot && missed < MAX_COUNTED; t = cron.nextRun(t)) missed++;
    const next = cron.nextRun(now);
    return { slot, missed, ...(next ? { next } : {}) };
  } catch (err) {
    return { missed: 0, error: `schedule ${JSON.stringify(expression)} cannot be evaluated in time zone ${timezone ?? "UTC"}: ${(err as Error).message}` };
  } finally {
    cron.stop();
  }
}

function wholeSecond(t: Date): Date {
  return new Date(Math.floor(t.getTime() / 1000) * 1000);
}

/** A slot's id in names and labels: its UTC time to the second, `20261202t060000z`. */
export function slotId(slot: Date): string {
  return slot
    .toISOString()
    .replace(/\.\d{3}Z$/, "Z")
    .replace(/[-:]/g, "")
    .toLowerCase();
}

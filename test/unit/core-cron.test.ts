// Cron schedules evaluated by croner, with the schedule's time zone; what admission cannot see shows as an error.
import { describe, expect, it } from "vitest";
import { nextCronRun } from "../../lib/core/cron.ts";

const after = new Date("2026-12-01T10:30:00Z");

describe("nextCronRun", () => {
  it.each([
    ["0 2 * * *", "Europe/Berlin", "2026-12-02T01:00:00.000Z"],
    ["0 2 * * *", undefined, "2026-12-02T02:00:00.000Z"],
    ["@daily", undefined, "2026-12-02T00:00:00.000Z"],
    ["*/15 * * * *", "America/New_York", "2026-12-01T10:45:00.000Z"],
    ["30 10 * * *", undefined, "2026-12-02T10:30:00.000Z"],
  ])("%s in %s after 10:30Z → %s", (expression, timezone, next) => {
    expect(nextCronRun(expression, timezone, after)).toEqual({ next: new Date(next) });
  });

  it.each([
    ["0 0 31 2 *", undefined, /never comes due/],
    ["*/15 * * * *", "Mars/Olympus", /time zone Mars\/Olympus/],
    ["0 0 * * * *", undefined, /not a valid cron expression.*5 parts/],
  ])("%s in %s is an error naming why", (expression, timezone, why) => {
    const r = nextCronRun(expression, timezone, after);
    expect("error" in r && r.error).toMatch(why);
  });
});

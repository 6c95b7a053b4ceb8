// When a schedule's work is due: the original's interval syntax, cron through croner in a time zone (across DST
// changes), one catch-up run after downtime, and slot ids that make a second tick in a window a no-op.
import { describe, expect, it } from "vitest";
import { dueSlot, intervalSeconds, slotId } from "../../lib/core/schedule.ts";

const t = (iso: string) => new Date(iso);

describe("intervalSeconds", () => {
  it.each([
    ["6h", 21_600],
    ["1h30m", 5_400],
    ["60s", 60],
    ["2w", 1_209_600],
    ["1d12h", 129_600],
    ["90m", 5_400],
  ])("%s is %i s", (text, seconds) => expect(intervalSeconds(text)).toBe(seconds));

  it.each(["", "6", "h", "1.5h", "0s", "1y", "6h "])("%j is not an interval", (text) => expect(intervalSeconds(text)).toBeUndefined());
});

describe("dueSlot with an interval", () => {
  const created = t("2026-12-01T00:00:00.250Z");

  it("runs a new backup schedule at once, at its creation second", () => {
    expect(dueSlot({ interval: "6h" }, undefined, created, t("2026-12-01T00:03:00Z"), true)).toEqual({
      slot: t("2026-12-01T00:00:00Z"),
      missed: 0,
      next: t("2026-12-01T06:00:00Z"),
    });
  });

  it("without runAtFirst, first comes one interval after creation", () => {
    expect(dueSlot({ interval: "1d" }, undefined, created, t("2026-12-01T12:00:00Z"))).toEqual({ missed: 0, next: t("2026-12-02T00:00:00Z") });
    expect(dueSlot({ interval: "1d" }, undefined, created, t("2026-12-02T00:04:00Z")).slot).toEqual(t("2026-12-02T00:00:00Z"));
  });

  it("is not due again inside the same interval", () => {
    const last = t("2026-12-01T06:00:00Z");
    for (const now of ["2026-12-01T06:00:00Z", "2026-12-01T06:04:59Z", "2026-12-01T11:59:59Z"]) {
      expect(dueSlot({ interval: "6h" }, last, created, t(now))).toEqual({ missed: 0, next: t("2026-12-01T12:00:00Z") });
    }
  });

  it("after 3 days of downtime on a 6h schedule, one run for the latest slot, on the same grid", () => {
    const d = dueSlot({ interval: "6h" }, t("2026-12-01T06:00:00Z"), created, t("2026-12-04T07:30:00Z"));
    expect(d).toEqual({ slot: t("2026-12-04T06:00:00Z"), missed: 11, next: t("2026-12-04T12:00:00Z") });
    // Recorded as the last slot, that one run leaves nothing due.
    expect(dueSlot({ interval: "6h" }, d.slot, created, t("2026-12-04T07:35:00Z")).slot).toBeUndefined();
  });

  it("combined units", () => {
    expect(dueSlot({ interval: "1h30m" }, t("2026-12-01T00:00:00Z"), created, t("2026-12-01T01:30:00Z")).slot).toEqual(t("2026-12-01T01:30:00Z"));
  });
});

describe("dueSlot with cron", () => {
  const created = t("2026-12-01T10:30:00Z");

  it.each([
    ["0 2 * * *", "Europe/Berlin", "2026-12-02T01:00:00.000Z"],
    ["0 2 * * *", undefined, "2026-12-02T02:00:00.000Z"],
    ["@daily", undefined, "2026-12-02T00:00:00.000Z"],
    ["*/15 * * * *", "America/New_York", "2026-12-01T10:45:00.000Z"],
    ["30 10 * * *", undefined, "2026-12-02T10:30:00.000Z"],
  ])("%s in %s after 10:30Z is next at %s", (cron, timezone, next) => {
    expect(dueSlot({ cron, ...(timezone ? { timezone } : {}) }, undefined, created, created)).toEqual({ missed: 0, next: new Date(next) });
  });

  it.each([
    ["0 0 31 2 *", undefined, /never comes due/],
    ["*/15 * * * *", "Mars/Olympus", /time zone Mars\/Olympus|not a valid/],
    ["0 0 * * * *", undefined, /not a valid cron expression.*5 parts/],
  ])("%s in %s is an error naming why", (cron, timezone, why) => {
    expect(dueSlot({ cron, ...(timezone ? { timezone } : {}) }, undefined, created, created).error).toMatch(why);
  });

  it("09:00 in New York fires at 14:00Z before the DST change and at 13:00Z after spring forward", () => {
    // 2026-03-08 02:00 EST → 03:00 EDT.
    const timing = { cron: "0 9 * * *", timezone: "America/New_York" };
    const fires: string[] = [];
    let last = t("2026-03-05T00:00:00Z");
    for (let now = last.getTime(); now < t("2026-03-11T00:00:00Z").getTime(); now += 5 * 60_000) {
      const d = dueSlot(timing, last, last, new Date(now));
      if (d.slot) {
        fires.push(d.slot.toISOString());
        last = d.slot;
      }
    }
    expect(fires).toEqual([
      "2026-03-05T14:00:00.000Z",
      "2026-03-06T14:00:00.000Z",
      "2026-03-07T14:00:00.000Z",
      "2026-03-08T13:00:00.000Z",
      "2026-03-09T13:00:00.000Z",
      "2026-03-10T13:00:00.000Z",
    ]);
  });

  it("02:30 in Berlin fires once on the autumn change day and once, at the end of the gap, on the spring day", () => {
    const fire = (cron: string, from: string, to: string) => {
      const out: string[] = [];
      let last = t(from);
      for (let now = last.getTime(); now < t(to).getTime(); now += 5 * 60_000) {
        const d = dueSlot({ cron, timezone: "Europe/Berlin" }, last, last, new Date(now));
        if (d.slot) {
          out.push(d.slot.toISOString());
          last = d.slot;
        }
      }
      return out;
    };
    // 2026-10-25 03:00 CEST → 02:00 CET: local 02:30 happens twice; the daily backup runs once, at the first.
    expect(fire("30 2 * * *", "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z")).toEqual([
      "2026-10-24T00:30:00.000Z",
      "2026-10-25T00:30:00.000Z",
      "2026-10-26T01:30:00.000Z",
    ]);
    // 2026-03-29 02:00 CET → 03:00 CEST: local 02:30 does not exist that day; it runs once, when the gap ends.
    expect(fire("30 2 * * *", "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z")).toEqual([
      "2026-03-28T01:30:00.000Z",
      "2026-03-29T01:00:00.000Z",
      "2026-03-30T00:30:00.000Z",
    ]);
  });

  it("after 3 days down, one catch-up run for the latest missed instant", () => {
    const d = dueSlot({ cron: "0 */6 * * *" }, t("2026-12-01T06:00:00Z"), created, t("2026-12-04T07:30:00Z"));
    expect(d).toEqual({ slot: t("2026-12-04T06:00:00Z"), missed: 11, next: t("2026-12-04T12:00:00Z") });
  });
});

describe("slotId", () => {
  it("is the UTC second, lowercase, usable in a name", () => {
    expect(slotId(t("2026-12-02T06:00:00.999Z"))).toBe("20261202t060000z");
  });
});

import { describe, expect, it } from "vitest";
import { isEmptyPolicy, keepFlags, Retention } from "../../lib/restic/retention.ts";

describe("retention policy to --keep flags", () => {
  it.each([
    { policy: {}, want: [] },
    { policy: { daily: 7 }, want: ["--keep-daily", "7"] },
    {
      policy: { yearly: 2, monthly: 12, weekly: 4, daily: 7, hourly: 24, last: 3, within: "1y6m" },
      want: [
        "--keep-last",
        "3",
        "--keep-hourly",
        "24",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "12",
        "--keep-yearly",
        "2",
        "--keep-within",
        "1y6m",
      ],
    },
    { policy: { within: "36h" }, want: ["--keep-within", "36h"] },
  ])("$policy gives $want", ({ policy, want }) => {
    expect(keepFlags(policy)).toEqual(want);
    expect(isEmptyPolicy(policy)).toBe(want.length === 0);
  });
});

describe("retention schema", () => {
  it.each([
    { input: { daily: 7, weekly: 4 }, ok: true },
    { input: { within: "1y2m3d4h" }, ok: true },
    { input: { within: "14d" }, ok: true },
    { input: { daily: 0 }, ok: false },
    { input: { daily: -1 }, ok: false },
    { input: { daily: 1.5 }, ok: false },
    { input: { within: "2w" }, ok: false },
    { input: { within: "" }, ok: false },
    { input: { dayly: 7 }, ok: false },
  ])("$input valid: $ok", ({ input, ok }) => {
    expect(Retention.safeParse(input).success).toBe(ok);
  });
});

import { describe, expect, it } from "vitest";
import { ForgetReport, forgetCounts, selectSnapshot, type Snapshot } from "../../lib/restic/snapshots.ts";

const snap = (n: number, time: string): Snapshot => ({ id: String(n).repeat(64).slice(0, 64), time, hostname: "prod" });
const a = snap(1, "2024-01-01T10:00:00Z");
const b = snap(2, "2024-01-02T10:00:00.5+00:00");
const c = snap(3, "2024-01-03T12:00:00+02:00"); // 10:00 UTC
const cTwin = snap(4, "2024-01-03T10:00:00Z");

describe("choosing the snapshot to restore", () => {
  it.each([
    { name: "the newest", list: [a, c, b], before: undefined, want: c },
    { name: "none in an empty list", list: [], before: undefined, want: undefined },
    { name: "the newest at or before a time", list: [a, b, c], before: "2024-01-02T10:00:00.5Z", want: b },
    { name: "by instant, whatever the offset", list: [a, b, c], before: "2024-01-03T09:59:59Z", want: b },
    { name: "none before the first", list: [a, b], before: "2023-12-31T00:00:00Z", want: undefined },
    { name: "equal times broken by id, in any order", list: [cTwin, c], before: undefined, want: cTwin },
    { name: "equal times broken by id, reversed", list: [c, cTwin], before: undefined, want: cTwin },
  ])("$name", ({ list, before, want }) => {
    expect(selectSnapshot(list, before ? new Date(before) : undefined)).toEqual(want);
  });
});

describe("forget report", () => {
  it("counts kept and removed across groups", () => {
    const report = ForgetReport.parse([
      { host: "prod", tags: ["pvc=a"], keep: [a, b], remove: [c], reasons: [] },
      { host: "prod", tags: ["pvc=b"], keep: [cTwin], remove: null },
    ]);
    expect(forgetCounts(report)).toEqual({ kept: 3, removed: 1 });
  });
});

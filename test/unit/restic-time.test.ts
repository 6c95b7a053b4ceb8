import { describe, expect, it } from "vitest";
import { parseGoDuration, parseSnapshotTime, resticTime } from "../../lib/restic/time.ts";

describe("snapshot time", () => {
  it.each([
    ["2024-05-01T02:03:04Z", "2024-05-01T02:03:04.000Z"],
    ["2024-05-01T02:03:04.250Z", "2024-05-01T02:03:04.250Z"],
    ["2024-05-01T04:03:04+02:00", "2024-05-01T02:03:04.000Z"],
    ["2024-05-01 02:03:04", "2024-05-01T02:03:04.000Z"],
  ])("%s is %s", (text, iso) => {
    expect(parseSnapshotTime(text)?.toISOString()).toBe(iso);
  });

  it.each(["yesterday", "2024-05-01", "2024-05-01T02:03:04", "2024-13-01T00:00:00Z", "1714528984"])("rejects %s", (text) => {
    expect(parseSnapshotTime(text)).toBeUndefined();
  });

  it("formats --time in UTC, to the second", () => {
    expect(resticTime(new Date("2024-05-01T04:03:04.999+02:00"))).toBe("2024-05-01 02:03:04");
  });
});

describe("Go durations", () => {
  it.each([
    ["90s", 90_000],
    ["5m", 300_000],
    ["1h30m", 5_400_000],
    ["250ms", 250],
    ["1m30s", 90_000],
    ["0s", 0],
  ])("%s is %i ms", (text, ms) => {
    expect(parseGoDuration(text)).toBe(ms);
  });

  it.each(["", "5", "-1m", "1.5h", "5 m", "1d"])("rejects %j", (text) => {
    expect(parseGoDuration(text)).toBeUndefined();
  });
});

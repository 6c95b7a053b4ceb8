import { describe, expect, it } from "vitest";
import { exitCodeOf } from "../../functions/worker/main.ts";
import { outcomeOf, type Reason } from "../../lib/restic/result.ts";

describe("worker exit code", () => {
  it.each([
    { reason: "Completed", exitCode: 0, want: 0 },
    { reason: "Incomplete", exitCode: 3, want: 3 },
    { reason: "Incomplete", exitCode: 1, want: 3 },
    { reason: "Incomplete", exitCode: undefined, want: 3 },
    { reason: "EmptySource", exitCode: undefined, want: 0 },
    { reason: "Cancelled", exitCode: 1, want: 130 },
    { reason: "InvalidConfig", exitCode: undefined, want: 2 },
    { reason: "NoRepository", exitCode: 10, want: 10 },
    { reason: "Locked", exitCode: 11, want: 11 },
    { reason: "WrongPassword", exitCode: 12, want: 12 },
    { reason: "Unreachable", exitCode: 1, want: 1 },
    { reason: "NoSnapshot", exitCode: 0, want: 1 },
    { reason: "ResticFailed", exitCode: null, want: 1 },
    { reason: "ResticNotFound", exitCode: undefined, want: 1 },
    { reason: "InternalError", exitCode: undefined, want: 1 },
  ] satisfies { reason: Reason; exitCode: number | null | undefined; want: number }[])("$reason (restic $exitCode) → $want", ({ reason, exitCode, want }) => {
    expect(exitCodeOf({ reason, outcome: outcomeOf(reason), exitCode })).toBe(want);
  });
});

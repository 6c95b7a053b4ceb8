import { describe, expect, it } from "vitest";
import { decodeResult, encodeResult, outcomeOf, Reason, terminationMessageLimit, type WorkerResult } from "../../lib/restic/result.ts";

const base: WorkerResult = {
  command: "backup",
  outcome: "Succeeded",
  reason: "Completed",
  message: "Backed up PVC shop/data as snapshot 8964fac9.",
  snapshotId: "8964fac98a2ff5320922a72f49f58e068721575c316aa8623c524955421bd1d2",
  exitCode: 0,
  exitMeaning: "success",
  backup: { filesNew: 2, filesChanged: 0, filesUnmodified: 5, dataAdded: 1723, bytesProcessed: 6, durationSeconds: 0.641 },
  startedAt: "2024-05-01T02:00:00.000Z",
  finishedAt: "2024-05-01T02:00:01.000Z",
};

const bytes = (s: string) => new TextEncoder().encode(s).length;

describe("termination message", () => {
  it("round-trips a result", () => {
    expect(decodeResult(encodeResult(base))).toEqual({ ok: true, result: base });
  });

  it.each([
    { name: "ASCII", char: "a" },
    { name: "multi-byte", char: "日" },
    { name: "JSON-escaped", char: '"' },
    { name: "control characters", char: "\u0001" },
  ])("shortens a long $name message to fit 4096 bytes", ({ char }) => {
    const encoded = encodeResult({ ...base, message: char.repeat(10_000) });
    expect(bytes(encoded)).toBeLessThanOrEqual(terminationMessageLimit);
    const decoded = decodeResult(encoded);
    expect(decoded.ok && decoded.result.message.endsWith("…")).toBe(true);
    expect(decoded.ok && decoded.result.snapshotId).toBe(base.snapshotId);
  });

  it("leaves a short message alone", () => {
    expect(JSON.parse(encodeResult(base)).message).toBe(base.message);
  });

  it.each([
    { name: "not JSON", text: "panic: oops", error: "not JSON" },
    { name: "not a result", text: '{"command":"backup"}', error: "not a worker result" },
    { name: "outcome contradicting reason", text: encodeResult({ ...base, outcome: "Failed" }), error: "outcome does not match reason" },
  ])("rejects $name", ({ text, error }) => {
    const decoded = decodeResult(text);
    expect(decoded.ok).toBe(false);
    expect(decoded.ok ? "" : decoded.error).toContain(error);
  });
});

describe("outcome of each reason", () => {
  it.each(Reason.options.map((r) => [r, outcomeOf(r)] as const))("%s → %s", (reason, outcome) => {
    const expected: Record<string, string> = { Completed: "Succeeded", EmptySource: "Skipped", Cancelled: "Cancelled" };
    expect(outcome).toBe(expected[reason] ?? "Failed");
  });
});

import { describe, expect, it } from "vitest";
import { BackendRetryWatch } from "../../lib/restic/retry-watch.ts";

const refused =
  'Stat(<config/>) returned error, retrying after 1.037861835s: Head "http://alice:***@127.0.0.1:18009/alice/r1/config": dial tcp 127.0.0.1:18009: connect: connection refused';

describe("watching backend retries", () => {
  it("is quiet until restic retries", () => {
    const w = new BackendRetryWatch();
    w.observe("loading indexes...", 0);
    expect(w.failingSince).toBeUndefined();
    expect(w.exhausted(1e9, 1000)).toBe(false);
  });

  it("measures from the first failure and keeps the last error", () => {
    const w = new BackendRetryWatch();
    w.observe(refused, 1_000);
    w.observe(refused.replace("connection refused", "i/o timeout"), 5_000);
    expect(w.failingSince).toBe(1_000);
    expect(w.lastError).toMatch(/i\/o timeout$/);
    expect(w.exhausted(60_999, 60_000)).toBe(false);
    expect(w.exhausted(61_000, 60_000)).toBe(true);
  });

  it("starts over after a success", () => {
    const w = new BackendRetryWatch();
    w.observe(refused, 0);
    w.observe("Save(<data/1a2b3c4d5e>) operation successful after 2 retries", 10_000);
    expect(w.exhausted(100_000, 60_000)).toBe(false);
    w.observe(refused, 100_000);
    expect(w.failingSince).toBe(100_000);
  });
});

// The command drivers against a scripted restic: which runs they make, in which order, and what they conclude.
import { pino } from "pino";
import { describe, expect, it, vi } from "vitest";
import { prune } from "../../functions/worker/commands/prune.ts";
import { restore } from "../../functions/worker/commands/restore.ts";
import { snapshots as listSnapshots } from "../../functions/worker/commands/snapshots.ts";
import { REPOSITORY_POLL_MS, runCreatingRepository, type WorkerContext } from "../../functions/worker/commands/shared.ts";
import { unlock } from "../../functions/worker/commands/unlock.ts";
import type { PruneConfig, RestoreConfig } from "../../functions/worker/config.ts";
import { ProgressReporter } from "../../functions/worker/progress.ts";
import type { ResticInvocation, ResticRun } from "../../functions/worker/restic.ts";
import { workerHostname } from "../../lib/restic/locks.ts";
import type { ResticRunFacts } from "../../lib/restic/outcome.ts";
import { decodeResult, encodeResult } from "../../lib/restic/result.ts";

const log = pino({ level: "silent" });
const id = (c: string) => c.repeat(64);

type Script = (inv: ResticInvocation) => Omit<Partial<ResticRun>, "facts"> & { facts?: Partial<ResticRunFacts> };

function scripted(script: Script) {
  const calls: string[][] = [];
  const ctx: WorkerContext = {
    log,
    progress: (kind) => new ProgressReporter({ kind, intervalMs: 0, log }),
    restic: {
      async run(inv) {
        calls.push([...inv.args]);
        const r = script(inv);
        return { stdout: [], ...r, facts: { command: inv.command, exitCode: 0, errors: [], stderr: [], ...r.facts } };
      },
    },
  };
  return { ctx, calls };
}

const common = {
  resticBinary: "restic",
  repository: "rest:http://alice:***@h/alice/r",
  initializeRepo: false,
  repositoryWaitMs: 0,
  lockWait: "5m",
  unreachableTimeout: "2m",
  unreachableTimeoutMs: 120_000,
  logLevel: "info" as const,
  progress: { intervalMs: 0 },
};

const snapshots = [
  { id: id("a"), time: "2024-01-01T00:00:00Z", hostname: "prod" },
  { id: id("b"), time: "2024-01-02T00:00:00Z", hostname: "prod" },
  { id: id("c"), time: "2024-01-03T00:00:00Z", hostname: "prod" },
];

describe("restore", () => {
  const latest = (before?: string): RestoreConfig => ({
    ...common,
    command: "restore",
    targetPath: "/target",
    include: [],
    deleteOthers: false,
    source: { kind: "latest", host: "prod", pvc: "data", namespace: "shop", ...(before ? { before: new Date(before) } : {}) },
  });

  it("restores the latest snapshot before a time", async () => {
    const { ctx, calls } = scripted((inv) =>
      inv.command === "snapshots"
        ? { stdout: [JSON.stringify(snapshots)] }
        : { summary: { message_type: "summary", total_files: 3, files_restored: 3, total_bytes: 10, bytes_restored: 10 } },
    );
    const r = await restore(latest("2024-01-02T12:00:00Z"), ctx);
    expect(calls).toEqual([
      ["snapshots", "--json", "--host", "prod", "--tag", "pvc=data,namespace=shop"],
      ["restore", id("b"), "--json", "--retry-lock", "5m", "--target", "/target", "--sparse"],
    ]);
    expect(r).toMatchObject({
      reason: "Completed",
      snapshotId: id("b"),
      restore: { files: 3, bytes: 10 },
      message: "Restored snapshot bbbbbbbb (3 files, 10 B) into /target.",
    });
  });

  it("says clearly when no snapshot matches, without restoring", async () => {
    const { ctx, calls } = scripted(() => ({ stdout: [JSON.stringify(snapshots)] }));
    const r = await restore(latest("2023-06-01T00:00:00Z"), ctx);
    expect(calls).toHaveLength(1);
    expect(r).toMatchObject({
      reason: "NoSnapshot",
      message: "There is no snapshot of PVC shop/data from cluster prod taken at or before 2023-06-01T00:00:00.000Z.",
    });
  });

  it("stops at a failed listing", async () => {
    const { ctx, calls } = scripted(() => ({ facts: { exitCode: 12 } }));
    expect(await restore(latest(), ctx)).toMatchObject({ reason: "WrongPassword", exitCode: 12 });
    expect(calls).toHaveLength(1);
  });
});

describe("prune", () => {
  const config: PruneConfig = { ...common, command: "prune", host: "prod", retention: { last: 1 } };
  const report = [{ host: "prod", tags: ["pvc=data"], keep: [snapshots[2]], remove: [snapshots[0], snapshots[1]] }];

  it("forgets, then prunes, and counts", async () => {
    const { ctx, calls } = scripted((inv) => (inv.command === "forget" ? { stdout: [JSON.stringify(report)] } : {}));
    const r = await prune(config, ctx);
    expect(calls.map((c) => c[0])).toEqual(["unlock", "list", "forget", "prune"]);
    expect(r).toMatchObject({ reason: "Completed", forget: { kept: 1, removed: 2 }, message: "Forgot 2 snapshots and kept 1, and pruned the repository." });
  });

  it("does not prune when forget could not delete", async () => {
    const { ctx, calls } = scripted((inv) =>
      inv.command === "unlock" || inv.command === "list"
        ? {}
        : {
            stdout: [JSON.stringify(report)],
            facts: {
              stderr: ["Remove(<snapshot/aaaa>) failed: unexpected HTTP response (403): 403 Forbidden", "unable to remove snapshot/aaaa from the repository"],
            },
          },
    );
    const r = await prune(config, ctx);
    expect(calls.map((c) => c[0])).toEqual(["unlock", "list", "forget"]);
    expect(r).toMatchObject({ reason: "Forbidden", exitCode: 0 });
  });

  it("reports a failed prune after a good forget", async () => {
    const { ctx } = scripted((inv) =>
      inv.command === "forget"
        ? { stdout: [JSON.stringify(report)] }
        : { facts: { exitCode: 1, finalMessage: "Fatal: unexpected HTTP response (403): 403 Forbidden" } },
    );
    const r = await prune(config, ctx);
    expect(r.reason).toBe("Forbidden");
    expect(r.message).toMatch(/^Forgot 2 snapshots and kept 1, but prune failed: The repository server refused/);
  });
});

describe("creating a missing repository", () => {
  const inv: ResticInvocation = { command: "check", args: ["check", "--json"] };

  it("initialises and runs again when allowed", async () => {
    let created = false;
    const { ctx, calls } = scripted((i) => {
      if (i.command === "init") created = true;
      return created ? {} : { facts: { exitCode: 10 } };
    });
    const run = await runCreatingRepository(inv, { ...common, initializeRepo: true }, ctx);
    expect(calls.map((c) => c[0])).toEqual(["check", "init", "check"]);
    expect(run.facts.exitCode).toBe(0);
  });

  it("runs again even when init fails (another worker may have created it)", async () => {
    const { ctx, calls } = scripted((i) => ({ facts: { exitCode: i.command === "init" ? 1 : 10 } }));
    const run = await runCreatingRepository(inv, { ...common, initializeRepo: true }, ctx);
    expect(calls.map((c) => c[0])).toEqual(["check", "init", "check"]);
    expect(run.facts.exitCode).toBe(10);
  });

  it("without INITIALIZE_REPO but with REPOSITORY_WAIT, waits for another worker to create it and never runs init", async () => {
    vi.useFakeTimers();
    try {
      let tries = 0;
      const { ctx, calls } = scripted(() => (++tries >= 3 ? {} : { facts: { exitCode: 10 } }));
      const running = runCreatingRepository(inv, { ...common, repositoryWaitMs: 60_000 }, ctx);
      await vi.advanceTimersByTimeAsync(2 * REPOSITORY_POLL_MS);
      const run = await running;
      expect(calls.map((c) => c[0])).toEqual(["check", "check", "check"]);
      expect(run.facts.exitCode).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it("gives up waiting after REPOSITORY_WAIT and reports the missing repository", async () => {
    vi.useFakeTimers();
    try {
      const { ctx, calls } = scripted(() => ({ facts: { exitCode: 10 } }));
      const running = runCreatingRepository(inv, { ...common, repositoryWaitMs: 3 * REPOSITORY_POLL_MS }, ctx);
      await vi.advanceTimersByTimeAsync(4 * REPOSITORY_POLL_MS);
      expect((await running).facts.exitCode).toBe(10);
      expect(calls.map((c) => c[0])).toEqual(["check", "check", "check", "check"]);
    } finally {
      vi.useRealTimers();
    }
  });

  it.each([
    { name: "not allowed", initializeRepo: false, exitCode: 10 },
    { name: "another failure", initializeRepo: true, exitCode: 12 },
  ])("leaves the repository alone when $name", async ({ initializeRepo, exitCode }) => {
    const { ctx, calls } = scripted(() => ({ facts: { exitCode } }));
    await runCreatingRepository(inv, { ...common, initializeRepo }, ctx);
    expect(calls.map((c) => c[0])).toEqual(["check"]);
  });
});

describe("unlock", () => {
  it.each([
    { stdout: ["successfully removed 2 locks"], message: "Removed 2 stale locks." },
    { stdout: [], message: "There were no stale locks to remove." },
  ])("says $message", async ({ stdout, message }) => {
    const { ctx } = scripted((inv) => (inv.command === "unlock" ? { stdout } : {}));
    expect(await unlock({ ...common, command: "unlock" }, ctx)).toMatchObject({ reason: "Completed", message });
  });

  // The locks a killed worker leaves: restic keeps them (another host, a PID it cannot see); Walle's rule removes them.
  const own = workerHostname("prod", "walle-prune-nightly-20261204t020000z");
  const gone = workerHostname("prod", "walle-backup-shop-data-3f9a2c");
  const locks: Record<string, object> = {
    [id("a")]: { time: "2026-12-04T09:00:00Z", exclusive: false, hostname: gone, pid: 9 },
    [id("b")]: { time: "2026-12-04T11:00:00Z", exclusive: true, hostname: own, pid: 9 },
    [id("c")]: { time: "2026-12-04T09:00:00Z", exclusive: false, hostname: "laptop", pid: 4242 },
  };
  const repository = (ids: string[]) =>
    scripted((inv) => {
      if (inv.command === "list") return { stdout: ids };
      if (inv.command === "cat") return { stdout: JSON.stringify(locks[inv.args[2] ?? ""], null, 2).split("\n") };
      return inv.args.includes("--remove-all") ? { stdout: [`successfully removed ${ids.length} locks`] } : {};
    });
  const config = { ...common, command: "unlock" as const, host: "prod", staleLocksBefore: new Date("2026-12-04T10:00:00Z") };

  it("removes the locks of this cluster's gone workers together when they are all the repository holds", async () => {
    const { ctx, calls } = repository([id("a"), id("b")]);
    const r = await unlock(config, { ...ctx, hostname: own });
    expect(calls.map((c) => c.join(" "))).toEqual([
      "unlock --json",
      "list locks --no-lock",
      `cat lock ${id("a")} --no-lock`,
      `cat lock ${id("b")} --no-lock`,
      "unlock --json --remove-all",
    ]);
    expect(r).toMatchObject({ reason: "Completed", message: "Removed 2 stale locks (2 of Walle workers that are gone)." });
  });

  it("removes none while anyone else holds a lock, and says whose", async () => {
    const { ctx, calls } = repository([id("a"), id("c")]);
    const r = await unlock(config, { ...ctx, hostname: own });
    expect(calls.some((c) => c.includes("--remove-all"))).toBe(false);
    expect(r.message).toBe(
      "There were no stale locks to remove; left 1 lock of Walle workers that are gone, since restic removes locks only all at once and other locks are held: the lock of laptop (PID 4242) from 2026-12-04T09:00:00Z is not a Walle worker's of this cluster.",
    );
  });

  it("without the tick's word, removes only this Job's earlier attempt's", async () => {
    const { staleLocksBefore: _, ...unvouched } = config;
    const { ctx, calls } = repository([id("a")]);
    const r = await unlock(unvouched, { ...ctx, hostname: own });
    expect(calls.some((c) => c.includes("--remove-all"))).toBe(false);
    expect(r.message).toBe("There were no stale locks to remove.");
  });
});

describe("snapshots", () => {
  const config = { ...common, command: "snapshots" as const, owner: { pvc: "data", namespace: "shop" } };
  const snap = (i: number, host = "prod") => ({
    id: i.toString(16).padStart(64, "a"),
    time: new Date(Date.UTC(2026, 11, 1) + i * 3_600_000).toISOString(),
    hostname: host,
    summary: { total_bytes_processed: 1000 + i },
  });

  it("lists the PVC's snapshots of every cluster, newest first, with short ids and sizes", async () => {
    const { ctx, calls } = scripted(() => ({ stdout: [JSON.stringify([snap(1), snap(3, "staging"), snap(2)])] }));
    const r = await listSnapshots(config, ctx);
    expect(calls).toEqual([["snapshots", "--json", "--no-lock", "--tag", "pvc=data,namespace=shop"]]);
    expect(r).toMatchObject({ reason: "Completed", message: "3 snapshots of PVC shop/data." });
    expect(r.snapshots).toEqual([
      { id: "aaaaaaaa", time: "2026-12-01T03:00:00.000Z", host: "staging", bytes: 1003 },
      { id: "aaaaaaaa", time: "2026-12-01T02:00:00.000Z", host: "prod", bytes: 1002 },
      { id: "aaaaaaaa", time: "2026-12-01T01:00:00.000Z", host: "prod", bytes: 1001 },
    ]);
  });

  it("of one cluster when CLUSTER_NAME says which; the newest 30 of more, with the count", async () => {
    const { ctx, calls } = scripted(() => ({ stdout: [JSON.stringify(Array.from({ length: 35 }, (_, i) => snap(i)))] }));
    const r = await listSnapshots({ ...config, host: "prod" }, ctx);
    expect(calls[0]).toEqual(["snapshots", "--json", "--no-lock", "--host", "prod", "--tag", "pvc=data,namespace=shop"]);
    expect(r).toMatchObject({ message: "35 snapshots of PVC shop/data from cluster prod; the newest 30 are listed.", snapshotsTotal: 35 });
    expect(r.snapshots?.[0]?.time).toBe("2026-12-02T10:00:00.000Z");
    expect(r.snapshots).toHaveLength(30);
  });

  it("says so when there are none, and fails on a list it cannot read", async () => {
    expect(await listSnapshots(config, scripted(() => ({ stdout: ["[]"] })).ctx)).toMatchObject({
      reason: "Completed",
      message: "There are no snapshots of PVC shop/data.",
      snapshots: [],
    });
    expect(await listSnapshots(config, scripted(() => ({ stdout: ["{"] })).ctx)).toMatchObject({ reason: "ResticFailed" });
  });

  it("fits the termination message: a list of long host names loses its oldest entries first", () => {
    const entries = Array.from({ length: 30 }, (_, i) => ({
      id: "0123abcd",
      time: "2026-12-01T00:00:00.123456789+01:00",
      host: `h${i}-${"x".repeat(150)}`,
      bytes: 1,
    }));
    const text = encodeResult({
      command: "snapshots",
      outcome: "Succeeded",
      reason: "Completed",
      message: "30 snapshots of PVC shop/data.",
      snapshots: entries,
      startedAt: "2026-12-01T00:00:00Z",
      finishedAt: "2026-12-01T00:00:01Z",
    });
    expect(new TextEncoder().encode(text).length).toBeLessThanOrEqual(4096);
    const decoded = decodeResult(text);
    expect(decoded.ok && decoded.result).toMatchObject({ message: "30 snapshots of PVC shop/data.", snapshotsTotal: 30 });
    expect(decoded.ok && decoded.result.snapshots?.map((e) => e.host)).toEqual(
      entries.slice(0, decoded.ok ? (decoded.result.snapshots?.length ?? 0) : 0).map((e) => e.host),
    );
  });
});

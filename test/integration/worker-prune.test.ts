// prune (forget by policy, then prune), check and unlock through the worker; and what an append-only server allows.
import { spawn } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { workerHostname } from "../../lib/restic/locks.ts";
import { inOwnHost, listSnapshots, publicRestic, restic, runWorker, startRestServer, tempDir, type Env, type RestServer } from "./worker-harness.ts";

let dir: string;
let server: RestServer;
let appendOnly: RestServer;
let base: Env;
let source: string;

beforeAll(async () => {
  dir = await tempDir("prune");
  const dataDir = path.join(dir, "rest");
  const users = { alice: "alice-http-pw" };
  // Two servers over the same data: the one backups go through may only append, the other may delete.
  server = await startRestServer({ dataDir, users });
  appendOnly = await startRestServer({ dataDir, users, appendOnly: true });
  source = path.join(dir, "source");
  await mkdir(source);
  base = {
    RESTIC_BINARY: await publicRestic(dir),
    RESTIC_PASSWORD: "repository password",
    CLUSTER_NAME: "test-cluster",
    SOURCE_PATH: source,
    PVC_NAMESPACE: "shop",
  };
});

afterAll(async () => {
  await server?.stop();
  await appendOnly?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function backupAt(env: Env, pvc: string, time: string): Promise<string> {
  await writeFile(path.join(source, "data.txt"), `${pvc} at ${time}\n`);
  const run = await runWorker("backup", { ...env, PVC_NAME: pvc, SNAPSHOT_TIME: time, INITIALIZE_REPO: "true" });
  expect(run.result.outcome).toBe("Succeeded");
  return run.result.snapshotId ?? "";
}

describe("retention", () => {
  it("keeps exactly what restic forget should keep, per PVC and only for this cluster", async () => {
    const env = { ...base, RESTIC_REPOSITORY: server.repository("alice", "alice-http-pw", "retention") };
    // 2024-01-01 is a Monday, so ISO week 1 is Jan 1-7 and week 2 is Jan 8-14 (restic's weekly buckets).
    const orders = [
      "2024-01-01T10:00:00Z",
      "2024-01-02T10:00:00Z",
      "2024-01-03T09:00:00Z",
      "2024-01-03T18:00:00Z",
      "2024-01-08T10:00:00Z",
      "2024-01-09T10:00:00Z",
      "2024-01-10T08:00:00Z",
      "2024-01-10T20:00:00Z",
    ];
    for (const t of orders) await backupAt(env, "orders", t);
    for (const t of ["2024-01-05T10:00:00Z", "2024-01-05T11:00:00Z"]) await backupAt(env, "invoices", t);
    await writeFile(path.join(source, "data.txt"), "another cluster\n");
    await restic(["backup", "--host", "other-cluster", "--tag", "pvc=orders,namespace=shop", "--time", "2023-01-01 00:00:00", "."], env, source);

    const run = await runWorker("prune", { ...env, RETENTION: JSON.stringify({ daily: 3, weekly: 2 }) });
    expect(run.result).toMatchObject({ command: "prune", outcome: "Succeeded", forget: { kept: 6, removed: 4 } });
    expect(run.result.message).toBe("Forgot 4 snapshots and kept 6, and pruned the repository.");

    // By hand, newest first within each PVC's group. orders: daily 3 keeps the newest of Jan 10, Jan 9 and Jan 8;
    // weekly 2 the newest of week 2 (Jan 10 20:00, kept already) and of week 1 (Jan 3 18:00). invoices: its
    // newest; and, since one day cannot fill 3 daily slots, restic also keeps the group's oldest snapshot (its
    // documented rule for too few snapshots). The other cluster's snapshot is not this cluster's to forget.
    const left = (await listSnapshots(env)).map((s) => `${s.hostname} ${s.tags?.[0]} ${s.time}`).sort();
    expect(left).toEqual([
      "other-cluster pvc=orders 2023-01-01T00:00:00Z",
      "test-cluster pvc=invoices 2024-01-05T10:00:00Z",
      "test-cluster pvc=invoices 2024-01-05T11:00:00Z",
      "test-cluster pvc=orders 2024-01-03T18:00:00Z",
      "test-cluster pvc=orders 2024-01-08T10:00:00Z",
      "test-cluster pvc=orders 2024-01-09T10:00:00Z",
      "test-cluster pvc=orders 2024-01-10T20:00:00Z",
    ]);
  });

  it("forgets only its schedule's snapshots when BACKUP_SCHEDULE is set", async () => {
    const env = { ...base, RESTIC_REPOSITORY: server.repository("alice", "alice-http-pw", "schedules") };
    for (const t of ["2024-02-01T00:00:00Z", "2024-02-02T00:00:00Z"]) await backupAt({ ...env, BACKUP_SCHEDULE: "nightly" }, "orders", t);
    for (const t of ["2024-02-01T00:00:00Z", "2024-02-02T00:00:00Z"]) await backupAt(env, "orders", t);
    const run = await runWorker("prune", { ...env, BACKUP_SCHEDULE: "nightly", RETENTION: '{"last":1}' });
    expect(run.result).toMatchObject({ outcome: "Succeeded", forget: { kept: 1, removed: 1 } });
    expect(await listSnapshots(env)).toHaveLength(3);
  });
});

describe("append-only server", () => {
  it("accepts backups and refuses prune, clearly, deleting nothing", async () => {
    const viaAppendOnly = { ...base, RESTIC_REPOSITORY: appendOnly.repository("alice", "alice-http-pw", "append-only") };
    await backupAt(viaAppendOnly, "orders", "2024-03-01T00:00:00Z");
    await backupAt(viaAppendOnly, "orders", "2024-03-02T00:00:00Z");

    const run = await runWorker("prune", { ...viaAppendOnly, RETENTION: '{"last":1}' });
    expect(run.exitCode).toBe(1);
    expect(run.result).toMatchObject({ command: "prune", outcome: "Failed", reason: "Forbidden" });
    expect(run.result.message).toContain("HTTP 403 Forbidden");
    expect(run.result.message).toContain("An append-only rest-server accepts backups but refuses to delete");
    expect(await listSnapshots(viaAppendOnly)).toHaveLength(2);

    // The same repository through the server that may delete.
    const pruned = await runWorker("prune", {
      ...viaAppendOnly,
      RESTIC_REPOSITORY: server.repository("alice", "alice-http-pw", "append-only"),
      RETENTION: '{"last":1}',
    });
    expect(pruned.result).toMatchObject({ outcome: "Succeeded", forget: { kept: 1, removed: 1 } });
  });
});

describe("check and unlock", () => {
  let env: Env;

  beforeAll(async () => {
    env = { ...base, RESTIC_REPOSITORY: server.repository("alice", "alice-http-pw", "maintenance") };
    await backupAt(env, "orders", "2024-04-01T00:00:00Z");
  });

  const locks = async () => (await restic(["list", "locks", "--no-lock"], env)).trim().split("\n").filter(Boolean);

  /**
   * A restic that holds a lock for as long as its stdin stays open: live until killed, stale after SIGKILL. With
   * `pod`, it runs as in a worker pod: that hostname, and PID 1 of a PID namespace of its own, which restic on this
   * host cannot tell from a live process.
   */
  async function lockHolder(host: string, pod?: string) {
    const before = (await locks()).length;
    const argv = [inject("restic"), "backup", "--stdin", "--host", host];
    const [cmd = "", ...args] = pod ? inOwnHost(pod, argv, { pid: true }) : argv;
    const holder = spawn(cmd, args, {
      env: { PATH: process.env.PATH ?? "", HOME: dir, ...env, RESTIC_REPOSITORY: env.RESTIC_REPOSITORY ?? "" },
      stdio: ["pipe", "ignore", "ignore"],
    });
    while ((await locks()).length === before) await new Promise((r) => setTimeout(r, 100));
    return holder;
  }

  async function kill(holder: ReturnType<typeof spawn>): Promise<void> {
    holder.kill("SIGKILL");
    await new Promise((r) => holder.once("close", r));
  }

  it("checks the repository, reading a subset of the data", async () => {
    const run = await runWorker("check", { ...env, CHECK_READ_DATA_SUBSET: "50%" });
    expect(run.result).toMatchObject({ command: "check", outcome: "Succeeded", message: "The repository has no errors (read 50% of the data)." });
  });

  it("waits a bounded time for a live lock, and removes only stale locks", async () => {
    const holder = await lockHolder("holder");

    const live = await runWorker("unlock", env);
    expect(live.result).toMatchObject({ outcome: "Succeeded", message: "There were no stale locks to remove." });
    expect(await locks()).toHaveLength(1);

    // prune needs the repository to itself: it waits LOCK_WAIT for the live lock, then says who holds it.
    const started = Date.now();
    const blocked = await runWorker("prune", { ...env, RETENTION: '{"last":1}', LOCK_WAIT: "2s" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000);
    expect(blocked.exitCode).toBe(11);
    expect(blocked.result).toMatchObject({ outcome: "Failed", reason: "Locked", exitCode: 11 });
    expect(blocked.result.message).toMatch(
      /is locked by another restic process and stayed locked for 2s \(lock was created at .*\)\. If that process is gone, run the unlock command/,
    );

    holder.kill("SIGKILL");
    await new Promise((r) => holder.once("close", r));
    const stale = await runWorker("unlock", env);
    expect(stale.result).toMatchObject({ outcome: "Succeeded", message: "Removed 1 stale lock." });
    expect(await locks()).toEqual([]);
  });

  it("prunes after removing the stale lock a killed worker left", async () => {
    const holder = await lockHolder("killed-worker");
    holder.kill("SIGKILL");
    await new Promise((r) => holder.once("close", r));
    expect(await locks()).toHaveLength(1);

    const run = await runWorker("prune", { ...env, RETENTION: '{"last":1}', LOCK_WAIT: "2s" });
    expect(run.result).toMatchObject({
      outcome: "Succeeded",
      message: expect.stringMatching(/^Removed 1 stale lock first; forgot \d+ snapshots and kept 1, and pruned the repository\.$/),
    });
    expect(await locks()).toEqual([]);
  });

  // A worker pod killed mid-backup: restic's own rule keeps its lock for 30 minutes (another host, and a PID that
  // restic here sees alive), so every prune would fail Locked until then.
  const gonePod = workerHostname("test-cluster", "walle-backup-shop-orders-3f9a2c");
  const retention = { RETENTION: '{"last":1}', LOCK_WAIT: "2s" };

  it("prunes after removing a killed worker pod's lock, once the tick vouches that no worker ran before it looked", async () => {
    await kill(await lockHolder("test-cluster", gonePod));
    const unvouched = await runWorker("prune", { ...env, ...retention });
    expect(unvouched.result).toMatchObject({ outcome: "Failed", reason: "Locked" });
    expect(await locks()).toHaveLength(1);

    const vouched = await runWorker("prune", { ...env, ...retention, STALE_LOCKS_BEFORE: new Date().toISOString() });
    expect(vouched.result).toMatchObject({
      outcome: "Succeeded",
      message: expect.stringMatching(/^Removed 1 stale lock first; forgot \d+ snapshots and kept 1, and pruned the repository\.$/),
    });
    expect(vouched.logs.map((l) => l.msg)).toContainEqual(
      expect.stringMatching(new RegExp(`^Removed the locks of Walle workers that are gone: the lock of ${gonePod} \\(PID 1\\) from .* was taken before`)),
    );
    expect(await locks()).toEqual([]);
  });

  it("leaves a killed worker pod's lock while a person's restic holds one, and removes neither", async () => {
    await kill(await lockHolder("test-cluster", gonePod));
    const person = await lockHolder("laptop");
    const run = await runWorker("prune", { ...env, ...retention, STALE_LOCKS_BEFORE: new Date().toISOString() });
    expect(run.result).toMatchObject({ outcome: "Failed", reason: "Locked" });
    expect(await locks()).toHaveLength(2);
    // Once the person's restic has ended (its lock gone by restic's rule, same host), the worker's goes too.
    await kill(person);
    const after = await runWorker("unlock", { ...env, STALE_LOCKS_BEFORE: new Date().toISOString() });
    expect(after.result).toMatchObject({ outcome: "Succeeded", message: "Removed 2 stale locks (1 of Walle workers that are gone)." });
    expect(await locks()).toEqual([]);
  });

  it("a retried check removes its own Job's earlier attempt's lock, with no word from the tick", async () => {
    const job = workerHostname("test-cluster", "walle-check-nightly-20261204t020000z");
    await kill(await lockHolder("test-cluster", job));
    const retry = await runWorker("check", { ...env, LOCK_WAIT: "2s" }, { hostname: job });
    expect(retry.result).toMatchObject({ outcome: "Succeeded", message: "The repository has no errors." });
    expect(retry.logs.map((l) => l.msg)).toContainEqual(expect.stringMatching(/is an earlier attempt's of this worker Job/));
    expect(await locks()).toEqual([]);
  });
});

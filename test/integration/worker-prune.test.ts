// prune (forget by policy, then prune), check and unlock through the worker; and what an append-only server allows.
import { spawn } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { listSnapshots, publicRestic, restic, runWorker, startRestServer, tempDir, type Env, type RestServer } from "./worker-harness.ts";

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
    const pruned = await runWorker("prune", { ...viaAppendOnly, RESTIC_REPOSITORY: server.repository("alice", "alice-http-pw", "append-only"), RETENTION: '{"last":1}' });
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

  /** A restic that holds a lock for as long as its stdin stays open: live until killed, stale after SIGKILL. */
  async function lockHolder(host: string) {
    const holder = spawn(inject("restic"), ["backup", "--stdin", "--host", host], {
      env: { PATH: process.env.PATH ?? "", HOME: dir, ...env, RESTIC_REPOSITORY: env.RESTIC_REPOSITORY ?? "" },
      stdio: ["pipe", "ignore", "ignore"],
    });
    while ((await locks()).length === 0) await new Promise((r) => setTimeout(r, 100));
    return holder;
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
    expect(blocked.result.message).toMatch(/is locked by another restic process and stayed locked for 2s \(lock was created at .*\)\. If that process is gone, run the unlock command/);

    holder.kill("SIGKILL");
    await new Promise((r) => holder.once("close", r));
    const stale = await runWorker("unlock", env);
    expect(stale.result).toMatchObject({ outcome: "Succeeded", message: "restic removed 1 stale lock." });
    expect(await locks()).toEqual([]);
  });

  it("prunes after removing the stale lock a killed worker left", async () => {
    const holder = await lockHolder("killed-worker");
    holder.kill("SIGKILL");
    await new Promise((r) => holder.once("close", r));
    expect(await locks()).toHaveLength(1);

    const run = await runWorker("prune", { ...env, RETENTION: '{"last":1}', LOCK_WAIT: "2s" });
    expect(run.result).toMatchObject({ outcome: "Succeeded", message: expect.stringMatching(/^Removed 1 stale locks first; forgot \d+ snapshots and kept 1, and pruned the repository\.$/) });
    expect(await locks()).toEqual([]);
  });
});

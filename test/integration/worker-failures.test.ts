// How the worker fails: each cause with its own reason and a message that says what to do.
import { chmod, chown, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  closedPort,
  listSnapshots,
  noise,
  publicRestic,
  restic,
  runWorker,
  runWorkerProcess,
  startRestServer,
  tempDir,
  type Env,
  type RestServer,
} from "./worker-harness.ts";

let dir: string;
let server: RestServer;
let base: Env;
let source: string;

beforeAll(async () => {
  dir = await tempDir("failures");
  server = await startRestServer({ dataDir: path.join(dir, "rest"), users: { alice: "alice-http-pw" } });
  source = path.join(dir, "source");
  await mkdir(source);
  await writeFile(path.join(source, "a.txt"), "a\n");
  base = {
    RESTIC_BINARY: await publicRestic(dir),
    RESTIC_REPOSITORY: server.repository("alice", "alice-http-pw", "main"),
    RESTIC_PASSWORD: "the right password",
    CLUSTER_NAME: "test-cluster",
    SOURCE_PATH: source,
    PVC_NAME: "orders",
    PVC_NAMESPACE: "shop",
  };
  await restic(["init"], base);
});

afterAll(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("repository failures", () => {
  const reasons = new Set<string>();

  it("wrong password", async () => {
    const run = await runWorker("backup", { ...base, RESTIC_PASSWORD: "not the password" });
    reasons.add(run.result.reason);
    expect(run.exitCode).toBe(12);
    expect(run.result).toMatchObject({ outcome: "Failed", reason: "WrongPassword", exitCode: 12, exitMeaning: "wrong password" });
    expect(run.result.message).toBe(
      `The repository password is wrong: no key of the repository at rest:http://alice:***@127.0.0.1:${server.port}/alice/main opens with it. ` +
        "Check RESTIC_PASSWORD in the repository Secret.",
    );
  });

  it("missing repository without INITIALIZE_REPO", async () => {
    const run = await runWorker("backup", { ...base, RESTIC_REPOSITORY: server.repository("alice", "alice-http-pw", "nothing-here") });
    reasons.add(run.result.reason);
    expect(run.exitCode).toBe(10);
    expect(run.result).toMatchObject({ outcome: "Failed", reason: "NoRepository", exitCode: 10 });
    expect(run.result.message).toMatch(/^There is no restic repository at rest:http:\/\/alice:\*\*\*@127\.0\.0\.1:\d+\/alice\/nothing-here\. /);
    expect(run.result.message).toContain("set INITIALIZE_REPO=true");
    expect(await readdir(path.join(dir, "rest", "alice"))).not.toContain("nothing-here");
  });

  it("a tenant's run in a shared repository names it by its Secret and never says where it is", async () => {
    const repository = server.repository("alice", "alice-http-pw", "nothing-here");
    const run = await runWorker("backup", { ...base, RESTIC_REPOSITORY: repository, REPOSITORY_SHOWN_AS: "Secret walle-system/team-a" });
    expect(run.result).toMatchObject({ outcome: "Failed", reason: "NoRepository" });
    expect(run.result.message).toMatch(/^There is no restic repository at Secret walle-system\/team-a\. /);
    const shown = `${run.result.message}\n${run.stderr}`;
    for (const where of [`127.0.0.1:${server.port}`, "alice/nothing-here", "alice:"]) expect(shown).not.toContain(where);
  });

  it("unreachable server, given up after UNREACHABLE_TIMEOUT rather than restic's 15 minutes", async () => {
    const port = await closedPort();
    const started = Date.now();
    const run = await runWorker("backup", {
      ...base,
      RESTIC_REPOSITORY: `rest:http://alice:alice-http-pw@127.0.0.1:${port}/alice/main`,
      UNREACHABLE_TIMEOUT: "3s",
    });
    reasons.add(run.result.reason);
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(run.exitCode).toBe(1);
    expect(run.result).toMatchObject({ outcome: "Failed", reason: "Unreachable" });
    expect(run.result.message).toMatch(
      /^The repository could not be reached for 3s: Head "http:\/\/alice:\*\*\*@127\.0\.0\.1:\d+\/alice\/main\/config": dial tcp .*connection refused\.$/,
    );
  });

  it("gives each its own reason", () => {
    expect([...reasons].sort()).toEqual(["NoRepository", "Unreachable", "WrongPassword"]);
  });

  it("credentials the server rejects", async () => {
    const run = await runWorker("backup", { ...base, RESTIC_REPOSITORY: server.repository("alice", "wrong-http-pw", "main") });
    expect(run.result).toMatchObject({ outcome: "Failed", reason: "Unauthorized" });
    expect(run.result.message).toContain("HTTP 401 Unauthorized");
  });

  it("another user's repository (private repos)", async () => {
    const run = await runWorker("backup", { ...base, RESTIC_REPOSITORY: `rest:http://alice:alice-http-pw@127.0.0.1:${server.port}/bob/main` });
    expect(run.result).toMatchObject({ outcome: "Failed", reason: "Unauthorized" });
  });
});

describe("source problems", () => {
  it("an unreadable file makes the backup Failed/Incomplete, naming it, with the snapshot id still reported", async () => {
    // Tests run as root, who reads every file; so the worker runs as uid 65532, as the worker pod does, over a
    // tree that uid owns, with one file it may not read.
    const tree = await tempDir("unreadable");
    await writeFile(path.join(tree, "readable.txt"), "ok\n");
    await writeFile(path.join(tree, "locked.txt"), "no\n");
    await chown(tree, 65532, 65532);
    await chown(path.join(tree, "readable.txt"), 65532, 65532);
    await chown(path.join(tree, "locked.txt"), 65532, 65532);
    await chmod(path.join(tree, "locked.txt"), 0o000);

    const run = await runWorker("backup", { ...base, SOURCE_PATH: tree, PVC_NAME: "partial" }, { uid: 65532 });
    expect(run.exitCode).toBe(3);
    expect(run.result).toMatchObject({ outcome: "Failed", reason: "Incomplete", exitCode: 3, backup: { filesNew: 1, unreadable: 1 } });
    expect(run.result.snapshotId).toMatch(/^[0-9a-f]{64}$/);
    expect(run.result.message).toMatch(
      /^Backed up PVC shop\/partial as snapshot [0-9a-f]{8}: .* 1 source file could not be read; the snapshot was made without it\. First: .*locked\.txt.*permission denied$/,
    );
    const listed = await restic(["ls", "--json", run.result.snapshotId ?? ""], base);
    expect(listed).toContain('"path":"/readable.txt"');
    expect(listed).not.toContain("locked.txt");
    await rm(tree, { recursive: true, force: true });
  });

  it("a tree the worker can read nothing of (a database's 0700 directory, or the volume's top) is Failed/Incomplete, never a silent success", async () => {
    const tree = await tempDir("private");
    await mkdir(path.join(tree, "pgdata"), { mode: 0o700 });
    await writeFile(path.join(tree, "pgdata", "PG_VERSION"), "17\n", { mode: 0o600 });
    await chown(path.join(tree, "pgdata", "PG_VERSION"), 999, 999);
    await chown(path.join(tree, "pgdata"), 999, 999);
    const inner = await runWorker("backup", { ...base, SOURCE_PATH: tree, PVC_NAME: "private" }, { uid: 65532 });
    expect(inner.exitCode).toBe(3);
    // restic exits 1 ("snapshot is empty"); the worker exits 3, so the Job is failed at once, not retried.
    expect(inner.result).toMatchObject({ outcome: "Failed", reason: "Incomplete", exitCode: 1 });
    expect(inner.result.message).toMatch(/^No source file could be read \(\d+ errors?\), so no snapshot was made\. First: .*pgdata.*permission denied/);
    expect(inner.result.snapshotId).toBeUndefined();
    // The volume's top directory itself, as a database image leaves it (0700, its own user).
    await chmod(tree, 0o700);
    await chown(tree, 999, 999);
    const top = await runWorker("backup", { ...base, SOURCE_PATH: tree, PVC_NAME: "private" }, { uid: 65532 });
    expect(top.exitCode).toBe(3);
    expect(top.result).toMatchObject({
      outcome: "Failed",
      reason: "Incomplete",
      message: "The worker may not read the top directory of PVC shop/private (permission denied), so no snapshot was made.",
    });
    await rm(tree, { recursive: true, force: true });
  });

  it("a source path that is not there", async () => {
    const run = await runWorker("backup", { ...base, SOURCE_PATH: path.join(dir, "not-mounted") });
    expect(run.result).toMatchObject({ outcome: "Failed", reason: "InvalidConfig" });
    expect(run.result.message).toContain("is not a readable directory");
  });
});

describe("configuration", () => {
  it("names what is missing and ends before restic runs", async () => {
    const run = await runWorker("backup", { RESTIC_BINARY: "/nonexistent/restic", RESTIC_PASSWORD: "x", CLUSTER_NAME: "c", SOURCE_PATH: "relative" });
    expect(run.exitCode).toBe(2);
    expect(run.result).toMatchObject({ command: "backup", outcome: "Failed", reason: "InvalidConfig" });
    expect(run.result.message).toBe(
      "Invalid worker configuration: RESTIC_REPOSITORY is required (or RESTIC_REPOSITORY_FILE); SOURCE_PATH must be an absolute path; " +
        "PVC_NAME is required; PVC_NAMESPACE is required.",
    );
    expect(run.result).not.toHaveProperty("exitCode");
  });

  it("says when restic is not there", async () => {
    const run = await runWorker("backup", { ...base, RESTIC_BINARY: "/nonexistent/restic" });
    expect(run.result).toMatchObject({ outcome: "Failed", reason: "ResticNotFound" });
    expect(run.result.message).toContain('restic could not be started as "/nonexistent/restic"');
  });

  it("rejects an unknown command with its usage", async () => {
    const run = await runWorkerProcess("backdown", base);
    expect(run.exitCode).toBe(2);
    expect(run.terminationMessage).toBe("Usage: node functions/worker/main.ts <backup|restore|prune|check|unlock|snapshots>");
  });
});

describe("SIGTERM", () => {
  it("stops restic cleanly, leaves no lock, and reports the job cancelled", async () => {
    const big = await tempDir("big");
    for (let i = 0; i < 100; i++) await writeFile(path.join(big, `part-${i}.bin`), noise(4 * 1024 * 1024));
    let signalled = false;
    const run = await runWorker(
      "backup",
      { ...base, SOURCE_PATH: big, PVC_NAME: "big", PROGRESS_INTERVAL: "0s" },
      {
        onLog: (line, signal) => {
          if (!signalled && String(line.msg).startsWith("Backup at")) {
            signalled = true;
            signal("SIGTERM");
          }
        },
      },
    );
    await rm(big, { recursive: true, force: true });
    expect(signalled).toBe(true);
    expect(run.exitCode).toBe(130);
    expect(run.result).toMatchObject({ outcome: "Cancelled", reason: "Cancelled" });
    expect(run.result).not.toHaveProperty("snapshotId");
    expect((await restic(["list", "locks", "--no-lock"], base)).trim()).toBe("");
    expect((await listSnapshots(base)).some((s) => s.tags?.includes("pvc=big"))).toBe(false);
  });
});

// Backup and restore through the worker, against the real restic and a real rest-server (htpasswd, private repos).
import { chown, link, mkdir, rm, symlink, utimes, writeFile, chmod } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listSnapshots, manifest, noise, publicRestic, runWorker, startRestServer, tempDir, type Env, type RestServer } from "./worker-harness.ts";

let dir: string;
let server: RestServer;
let env: Env;

beforeAll(async () => {
  dir = await tempDir("backup");
  server = await startRestServer({ dataDir: path.join(dir, "rest"), users: { alice: "alice-http-pw" } });
  env = {
    RESTIC_BINARY: await publicRestic(dir),
    RESTIC_REPOSITORY: server.repository("alice", "alice-http-pw", "main"),
    RESTIC_PASSWORD: "repository password",
    CLUSTER_NAME: "test-cluster",
    PVC_NAMESPACE: "shop",
  };
});

afterAll(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A tree with what restores get wrong: modes, owners, symlinks, hard links, empty directories, non-ASCII names. */
async function buildTree(root: string): Promise<void> {
  const file = async (rel: string, content: string | Buffer, mode = 0o644) => {
    await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await writeFile(path.join(root, rel), content);
    await chmod(path.join(root, rel), mode);
  };
  await file("docs/readme.md", "# Shop data\n");
  await file("docs/ünïcødé/日本語 ファイル.txt", "こんにちは\n");
  await file("emoji 🎉 and spaces.bin", noise(1000));
  await file("data/big.bin", noise(3 * 1024 * 1024 + 17));
  await file("data/empty.txt", "");
  await file("bin/run.sh", "#!/bin/sh\necho hi\n", 0o755);
  await file("secret/key.pem", "-----BEGIN KEY-----\n", 0o600);
  await chmod(path.join(root, "secret"), 0o700);
  await file("readonly.txt", "frozen\n", 0o444);
  await mkdir(path.join(root, "empty/nested/deeper"), { recursive: true });
  await mkdir(path.join(root, "empty-top"));
  await symlink("docs/readme.md", path.join(root, "link-to-readme"));
  await symlink("../data", path.join(root, "docs/data-link"));
  await symlink("does/not/exist", path.join(root, "dangling"));
  await link(path.join(root, "data/big.bin"), path.join(root, "data/big-hardlink.bin"));
  await chown(path.join(root, "docs/readme.md"), 1234, 5678);
  await utimes(path.join(root, "readonly.txt"), new Date("2001-02-03T04:05:06Z"), new Date("2001-02-03T04:05:06Z"));
}

describe("backup and restore", () => {
  let source: string;
  let first: Awaited<ReturnType<typeof runWorker>>;

  beforeAll(async () => {
    source = path.join(dir, "source");
    await mkdir(source);
    await buildTree(source);
    first = await runWorker("backup", { ...env, SOURCE_PATH: source, PVC_NAME: "orders", INITIALIZE_REPO: "true", SNAPSHOT_TIME: "2024-05-01T02:00:00Z" });
  });

  it("creates the repository and backs up, reporting a snapshot", () => {
    expect(first.exitCode).toBe(0);
    expect(first.result).toMatchObject({ command: "backup", outcome: "Succeeded", reason: "Completed", exitCode: 0, exitMeaning: "success" });
    expect(first.result.snapshotId).toMatch(/^[0-9a-f]{64}$/);
    expect(first.result.backup).toMatchObject({ filesChanged: 0, filesUnmodified: 0 });
    expect(first.result.backup?.filesNew).toBeGreaterThanOrEqual(9);
    expect(first.result.backup?.dataAdded).toBeGreaterThan(3 * 1024 * 1024);
    expect(first.result.message).toMatch(/^Backed up PVC shop\/orders as snapshot [0-9a-f]{8}: \d+ files \(\d+ new, 0 changed\)/);
  });

  it("tags the snapshot and dates it from SNAPSHOT_TIME, under the cluster's name", async () => {
    const [snap] = (await listSnapshots(env)).filter((s) => s.id === first.result.snapshotId);
    expect(snap).toMatchObject({ time: "2024-05-01T02:00:00Z", hostname: "test-cluster", tags: ["pvc=orders", "namespace=shop"] });
  });

  it("restores into another directory a byte-identical tree", async () => {
    const target = path.join(dir, "restored");
    const restored = await runWorker("restore", { ...env, PVC_NAME: "orders", RESTORE_TARGET_PATH: target });
    expect(restored.result).toMatchObject({ outcome: "Succeeded", snapshotId: first.result.snapshotId });
    expect(restored.result.message).toMatch(/^Restored snapshot [0-9a-f]{8} \(\d+ files, [\d.]+ MiB\) into /);
    const want = await manifest(source);
    expect(want.map((e) => e.path)).toEqual(
      expect.arrayContaining(["empty/nested/deeper", "docs/ünïcødé/日本語 ファイル.txt", "dangling", "docs/data-link", "data/big-hardlink.bin"]),
    );
    expect(await manifest(target)).toEqual(want);
  });

  it("backs up unchanged data incrementally", async () => {
    const second = await runWorker("backup", { ...env, SOURCE_PATH: source, PVC_NAME: "orders", SNAPSHOT_TIME: "2024-05-02T02:00:00Z" });
    expect(second.result).toMatchObject({ outcome: "Succeeded", backup: { filesNew: 0, filesChanged: 0 } });
    expect(second.result.snapshotId).not.toBe(first.result.snapshotId);
    expect(second.result.backup?.bytesProcessed).toBe(first.result.backup?.bytesProcessed);
    // Nothing but, at most, a changed tree: the parent came from this PVC's snapshots, so no file was reread.
    expect(second.result.backup?.dataAdded).toBeLessThan(1024);
  });
});

describe("choosing what to restore", () => {
  const pvc = "catalog";
  const snapshots: Record<string, string> = {};
  let source: string;

  beforeAll(async () => {
    source = path.join(dir, pvc);
    await mkdir(path.join(source, "sub"), { recursive: true });
    for (const [version, time] of [
      ["v1", "2024-06-01T00:00:00Z"],
      ["v2", "2024-06-02T00:00:00Z"],
      ["v3", "2024-06-03T00:00:00Z"],
    ] as const) {
      await writeFile(path.join(source, "version.txt"), `${version}\n`);
      await writeFile(path.join(source, "sub", "note.txt"), `note ${version}\n`);
      const run = await runWorker("backup", { ...env, SOURCE_PATH: source, PVC_NAME: pvc, SNAPSHOT_TIME: time });
      expect(run.result.outcome).toBe("Succeeded");
      snapshots[version] = run.result.snapshotId ?? "";
    }
  });

  async function restoreWith(extra: Env): Promise<{ run: Awaited<ReturnType<typeof runWorker>>; files: Record<string, string> }> {
    const target = await tempDir("restore");
    const run = await runWorker("restore", { ...env, PVC_NAME: pvc, RESTORE_TARGET_PATH: target, ...extra });
    const files = Object.fromEntries((await manifest(target)).filter((e) => e.type === "file").map((e) => [e.path, e.sha256 ?? ""]));
    await rm(target, { recursive: true, force: true });
    return { run, files };
  }

  it("takes the latest snapshot of the PVC by default", async () => {
    const { run } = await restoreWith({});
    expect(run.result.snapshotId).toBe(snapshots.v3);
  });

  it("takes the latest at or before RESTORE_BEFORE", async () => {
    const { run } = await restoreWith({ RESTORE_BEFORE: "2024-06-02T12:00:00Z" });
    expect(run.result.snapshotId).toBe(snapshots.v2);
  });

  it("takes a snapshot by id, short or long", async () => {
    expect((await restoreWith({ RESTORE_SNAPSHOT: snapshots.v1 ?? "" })).run.result.snapshotId).toBe(snapshots.v1);
    const short = await restoreWith({ RESTORE_SNAPSHOT: (snapshots.v1 ?? "").slice(0, 8) });
    expect(short.run.result).toMatchObject({ outcome: "Succeeded", message: expect.stringContaining((snapshots.v1 ?? "").slice(0, 8)) });
  });

  it("restores only the included paths", async () => {
    const { run, files } = await restoreWith({ RESTORE_INCLUDE: JSON.stringify(["/sub"]) });
    expect(run.result.outcome).toBe("Succeeded");
    expect(Object.keys(files)).toEqual(["sub/note.txt"]);
  });

  it("fails clearly when no snapshot matches", async () => {
    const { run } = await restoreWith({ RESTORE_BEFORE: "2020-01-01T00:00:00Z" });
    expect(run.exitCode).toBe(1);
    expect(run.result).toMatchObject({
      outcome: "Failed",
      reason: "NoSnapshot",
      message: "There is no snapshot of PVC shop/catalog from cluster test-cluster taken at or before 2020-01-01T00:00:00.000Z.",
    });
  });

  it("fails clearly for an unknown id", async () => {
    const { run } = await restoreWith({ RESTORE_SNAPSHOT: "deadbeef" });
    expect(run.result).toMatchObject({ outcome: "Failed", reason: "NoSnapshot" });
    expect(run.result.message).toContain('no matching ID found for prefix "deadbeef"');
  });
});

describe("empty volumes", () => {
  it.each([
    { name: "an empty directory", make: async (_root: string) => {} },
    { name: "only lost+found", make: async (root: string) => mkdir(path.join(root, "lost+found"), { mode: 0o700 }) },
  ])("skips $name, as the original did", async ({ make }) => {
    const source = await tempDir("empty");
    await make(source);
    const run = await runWorker("backup", { ...env, SOURCE_PATH: source, PVC_NAME: "fresh" });
    expect(run.exitCode).toBe(0);
    expect(run.result).toMatchObject({ outcome: "Skipped", reason: "EmptySource", message: "The volume of PVC shop/fresh is empty; no snapshot was made." });
    expect((await listSnapshots(env)).some((s) => s.tags?.includes("pvc=fresh"))).toBe(false);
    await rm(source, { recursive: true, force: true });
  });
});

describe("a password that restic's own output contains", () => {
  // "0" is in every snapshot id, byte count and timestamp restic prints: the worker must read restic's JSON as
  // written, and mask the password only in what it shows.
  it("still gives the summary, the snapshot id and a restore", async () => {
    const repo = { ...env, RESTIC_REPOSITORY: server.repository("alice", "alice-http-pw", "short-password"), RESTIC_PASSWORD: "0" };
    const source = await tempDir("short-password");
    await writeFile(path.join(source, "ledger-2024.txt"), "100 200 300\n");
    const backup = await runWorker("backup", { ...repo, SOURCE_PATH: source, PVC_NAME: "ledger", INITIALIZE_REPO: "true" });
    expect(backup.result).toMatchObject({ outcome: "Succeeded", reason: "Completed", backup: { filesNew: 1, filesChanged: 0 } });
    expect(backup.result.snapshotId).toMatch(/^[0-9a-f]{64}$/);
    expect(backup.result.message).toContain(`as snapshot ${backup.result.snapshotId?.slice(0, 8)}: 1 files (1 new, 0 changed)`);
    const target = await tempDir("short-password-restored");
    const restored = await runWorker("restore", { ...repo, PVC_NAME: "ledger", RESTORE_TARGET_PATH: target });
    expect(restored.result).toMatchObject({ outcome: "Succeeded", snapshotId: backup.result.snapshotId, restore: { files: 1 } });
    expect(await manifest(target)).toEqual(await manifest(source));
  });
});

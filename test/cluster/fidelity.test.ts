// What the local cluster's snapshots and clones keep, and what an unprivileged worker does with files it cannot
// read. A tree like a real application leaves (a database's 0700 directory of 0600 files owned by uid 999, a
// hard-linked pair, a sparse file, a FIFO, a dangling symlink, setuid and setgid files, an extended attribute,
// an old mtime) is snapshotted and cloned without blocking and without losing any of it; and backed up by the
// unprivileged worker, it ends Failed/Incomplete, naming what it could not read, never a silent success.
import { execFile } from "node:child_process";
import { chmod, chown, link, mkdir, readdir, symlink, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, inject, it } from "vitest";
import { PASSWORD, pvcWithData, SNAP, type BackupJobObj, settled } from "../support/backup-fixtures.ts";
import { admin, createNamespace, waitFor } from "../support/kube.ts";
import { startWalle } from "../support/walle.ts";
import { manifest, startRestServer, tempDir } from "../integration/worker-harness.ts";

const run = promisify(execFile);

/** Writes a hostile tree into `dir` (a volume's directory on the host). */
async function hostileTree(dir: string): Promise<void> {
  const db = path.join(dir, "pgdata");
  await mkdir(path.join(db, "base"), { recursive: true });
  for (let i = 0; i < 20; i++) await writeFile(path.join(db, "base", `${16384 + i}`), `row ${i}\n`.repeat(50), { mode: 0o600 });
  await writeFile(path.join(db, "PG_VERSION"), "16\n", { mode: 0o600 });
  for (const p of [db, path.join(db, "base"), ...(await readdir(path.join(db, "base"))).map((f) => path.join(db, "base", f)), path.join(db, "PG_VERSION")]) await chown(p, 999, 999);
  await chmod(path.join(db, "base"), 0o700);
  await chmod(db, 0o700);
  await writeFile(path.join(dir, "secret"), "nobody may read me\n");
  await chmod(path.join(dir, "secret"), 0o000);
  await writeFile(path.join(dir, "setuid"), "#!/bin/sh\n");
  await chmod(path.join(dir, "setuid"), 0o4755);
  await mkdir(path.join(dir, "shared"));
  await chmod(path.join(dir, "shared"), 0o2775);
  await writeFile(path.join(dir, "a.bin"), "linked\n");
  await link(path.join(dir, "a.bin"), path.join(dir, "b.bin"));
  await run("truncate", ["-s", "64M", path.join(dir, "sparse.img")]);
  await writeFile(path.join(dir, "sparse.img"), "head", { flag: "r+" });
  await run("mkfifo", [path.join(dir, "pipe")]);
  await symlink("nowhere/at/all", path.join(dir, "dangling"));
  await symlink("a.bin", path.join(dir, "link-to-a"));
  await writeFile(path.join(dir, "name with spaces\nand a newline \\ ü"), "odd\n");
  await run("setfattr", ["-n", "user.walle", "-v", "kept", path.join(dir, "a.bin")]);
  const old = new Date("2001-02-03T04:05:06Z");
  await utimes(path.join(dir, "setuid"), old, old);
}

async function volumeDir(ns: string, pvc: string): Promise<string> {
  const p = await waitFor(async () => {
    const got = await admin().get<{ spec: { volumeName?: string }; status?: { phase?: string } }>(`/api/v1/namespaces/${ns}/persistentvolumeclaims/${pvc}`);
    return got.status?.phase === "Bound" ? got : undefined;
  }, `PVC ${ns}/${pvc} Bound`);
  return path.join(inject("clusterStateDir"), "volumes", p.spec.volumeName ?? "");
}

describe("the local cluster's storage", () => {
  it("snapshots and clones a hostile tree faithfully, without blocking on its FIFO", async () => {
    const ns = await createNamespace("fidelity");
    await pvcWithData(ns, "app", {});
    const source = await volumeDir(ns, "app");
    await hostileTree(source);
    const before = await manifest(source, { holes: true, xattr: true });
    expect(before.map((e) => e.type)).toEqual(expect.arrayContaining(["fifo", "symlink", "dir", "file"]));

    await admin().create(`${SNAP}/namespaces/${ns}/volumesnapshots`, { apiVersion: "snapshot.storage.k8s.io/v1", kind: "VolumeSnapshot", metadata: { name: "snap" }, spec: { source: { persistentVolumeClaimName: "app" } } });
    await waitFor(async () => (await admin().get<{ status?: { readyToUse?: boolean } }>(`${SNAP}/namespaces/${ns}/volumesnapshots/snap`)).status?.readyToUse === true, "the snapshot ready", 60_000);
    const fromSnapshot = { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } };
    await admin().create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, { apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: { name: "restored" }, spec: { ...fromSnapshot, dataSource: { apiGroup: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: "snap" } } });
    await admin().create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, { apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: { name: "clone" }, spec: { ...fromSnapshot, dataSource: { kind: "PersistentVolumeClaim", name: "app" } } });

    expect(await manifest(await volumeDir(ns, "restored"), { holes: true, xattr: true })).toEqual(before);
    expect(await manifest(await volumeDir(ns, "clone"), { holes: true, xattr: true })).toEqual(before);
    // The sparse file stays sparse: 64 MiB long, a few KiB allocated.
    const sparse = before.find((e) => e.path === "sparse.img");
    expect(sparse?.blocks).toBeLessThan(64);
  });

  it("an unprivileged worker that cannot read the application's files ends Failed/Incomplete, naming them", async () => {
    await startWalle();
    const ns = await createNamespace("incomplete");
    const rest = await startRestServer({ dataDir: await tempDir("rest-incomplete"), users: { backup: "rest-secret-pw" } });
    try {
      await admin().create(`/api/v1/namespaces/${ns}/secrets`, { apiVersion: "v1", kind: "Secret", metadata: { name: "repo" }, stringData: { RESTIC_REPOSITORY: rest.repository("backup", "rest-secret-pw", ns), RESTIC_PASSWORD: PASSWORD, INITIALIZE_REPO: "true" } });
      await pvcWithData(ns, "db", {});
      await hostileTree(await volumeDir(ns, "db"));
      await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, { apiVersion: "ros.io/v1", kind: "BackupJob", metadata: { name: "nightly" }, spec: { sourcePvc: "db", repository: { name: "repo", namespace: ns } } });
      const bj = await settled(ns, "nightly", 120_000);
      const state = bj.status?.conditions?.find((c) => c.type === "BackupState");
      expect({ phase: bj.status?.phase, reason: state?.reason }).toEqual({ phase: "Failed", reason: "Incomplete" });
      expect(state?.message).toMatch(/could not be read; the snapshot was made without them\. First: .*(pgdata|secret).*permission denied/);
      // The partial snapshot is recorded, so nobody mistakes it for nothing, or for a whole one.
      expect((bj as BackupJobObj).status?.snapshotId).toMatch(/^[0-9a-f]{64}$/);
      const events = await admin().get<{ items: { type: string; reason: string; regarding: { name: string } }[] }>(`/apis/events.k8s.io/v1/namespaces/${ns}/events`);
      expect(events.items.filter((e) => e.regarding.name === "nightly" && e.type === "Warning").map((e) => e.reason)).toContain("BackupFailed");
    } finally {
      await rest.stop();
    }
  });
});

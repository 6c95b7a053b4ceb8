// Every file, every owner, or a loud failure. A tree like real applications leave (a database's 0700 directory of
// 0600 files owned by uid 999, a mode-0000 file, setuid and setgid files, hard links, a 1 GiB sparse file, a FIFO,
// a device node, symlinks, odd names, a 100-deep path, 2,000 small files, an old mtime, extended attributes):
// - the local cluster's snapshots and clones copy it faithfully, without blocking on its FIFO;
// - a BackupJob from a tenant namespace into the install namespace's repository backs it up with a full-fidelity
//   worker, and BackupRestores give it back equal (a) into a new PVC in a third namespace and (b) into an existing
//   PVC full of stale files, in a namespace an admin allowed full-fidelity workers in;
// - an unprivileged worker that cannot read it ends Failed/Incomplete, naming what it could not read;
// - each worker is admitted by the real kube-apiserver's Pod Security admission at the level the README names.
import { execFile } from "node:child_process";
import { chmod, chown, link, mkdir, open, readdir, symlink, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PRIVILEGED_WORKERS_ANNOTATION, workerMode } from "../../lib/core/privileges.ts";
import { workerJob } from "../../lib/core/builders.ts";
import { pvcWithData, repositorySecret, SNAP, settled, settledRestore, volumeDir, type BackupJobObj } from "../support/backup-fixtures.ts";
import { testConfig } from "../support/config.ts";
import { admin, clientForServiceAccount, createNamespace, waitFor, workerAccount } from "../support/kube.ts";
import { startWalle, WORKER_IMAGE } from "../support/walle.ts";
import { manifest, startRestServer, tempDir, type Entry, type RestServer } from "../integration/worker-harness.ts";

const run = promisify(execFile);
const INSTALL = "walle-system";
const GiB = 1024 ** 3;

let rest: RestServer;
beforeAll(async () => {
  rest = await startRestServer({ dataDir: await tempDir("rest-fidelity"), users: { fidelity: "rest-secret-pw" } });
});
afterAll(async () => rest?.stop());

/** Writes the hostile tree into `dir` (a volume's directory on the host), as its applications would have left it. */
async function hostileTree(dir: string): Promise<void> {
  const at = (...p: string[]) => path.join(dir, ...p);
  // A PostgreSQL-style data directory: 0700, files 0600, all owned by the database's uid 999.
  await mkdir(at("pgdata", "base"), { recursive: true });
  for (let i = 0; i < 20; i++) await writeFile(at("pgdata", "base", `${16384 + i}`), `row ${i}\n`.repeat(50), { mode: 0o600 });
  await writeFile(at("pgdata", "PG_VERSION"), "16\n", { mode: 0o600 });
  for (const p of [
    at("pgdata"),
    at("pgdata", "base"),
    at("pgdata", "PG_VERSION"),
    ...(await readdir(at("pgdata", "base"))).map((f) => at("pgdata", "base", f)),
  ])
    await chown(p, 999, 999);
  await chmod(at("pgdata", "base"), 0o700);
  await chmod(at("pgdata"), 0o700);
  // Nobody may read it; its owner is another user again.
  await writeFile(at("secret"), "nobody may read me\n");
  await chown(at("secret"), 1234, 1234);
  await chmod(at("secret"), 0o000);
  await writeFile(at("setuid"), "#!/bin/sh\n");
  await chmod(at("setuid"), 0o4755);
  await writeFile(at("setgid"), "#!/bin/sh\n");
  await chown(at("setgid"), 0, 50);
  await chmod(at("setgid"), 0o2755);
  await mkdir(at("shared"));
  await chown(at("shared"), 1000, 50);
  await chmod(at("shared"), 0o2775);
  await writeFile(at("a.bin"), "linked\n");
  await link(at("a.bin"), at("b.bin"));
  await run("setfattr", ["-n", "user.walle", "-v", "kept", at("a.bin")]);
  await run("setfattr", ["-n", "user.origin", "-v", "the application", at("shared")]);
  // 1 GiB long, one block allocated. Its data sits at the end: restic's --sparse punches a hole for each run of
  // zeros that starts one of its chunks, so data at the start would make its first chunk (512 KiB) dense.
  await run("truncate", ["-s", String(GiB), at("sparse.img")]);
  const sparse = await open(at("sparse.img"), "r+");
  await sparse.write("tail", GiB - 4);
  await sparse.close();
  await run("mkfifo", [at("pipe")]);
  await run("mknod", [at("null"), "c", "1", "3"]);
  await symlink("nowhere/at/all", at("dangling"));
  await symlink("a.bin", at("link-to-a"));
  await writeFile(at("name with spaces\nand a newline \\ and ü, ß, 日本"), "odd\n");
  let deep = at("deep");
  for (let i = 0; i < 100; i++) deep = path.join(deep, `level-${String(i).padStart(2, "0")}`);
  await mkdir(deep, { recursive: true });
  await writeFile(path.join(deep, "bottom.txt"), "100 directories down\n");
  await mkdir(at("many"));
  for (let i = 0; i < 2000; i++) await writeFile(at("many", `f-${String(i).padStart(4, "0")}`), `small file ${i}\n`);
  await chown(at("many"), 1000, 1000);
  const old = new Date("2001-02-03T04:05:06Z");
  await utimes(at("setuid"), old, old);
  await utimes(at("pgdata", "PG_VERSION"), old, old);
}

/** What must come back equal: the whole manifest, with allocated blocks and every extended attribute. */
const faithful = (dir: string) => manifest(dir, { holes: true, xattr: true });

function expectHostile(tree: Entry[]): void {
  const by = (p: string) => tree.find((e) => e.path === p);
  expect(tree.length).toBeGreaterThan(2100);
  expect(by("pgdata")).toMatchObject({ type: "dir", mode: "700", uid: 999, gid: 999 });
  expect(by("secret")).toMatchObject({ mode: "0", uid: 1234 });
  expect(by("setuid")?.mode).toBe("4755");
  expect(by("setgid")).toMatchObject({ mode: "2755", gid: 50 });
  expect(by("b.bin")?.linkedTo).toBe("a.bin");
  expect(by("a.bin")?.xattrs).toBe("user.walle=0x6b657074");
  expect(by("pipe")?.type).toBe("fifo");
  expect(by("null")).toMatchObject({ type: "chardev", rdev: 259 });
  expect(by("dangling")).toMatchObject({ type: "symlink", target: "nowhere/at/all" });
  // 1 GiB long, a few KiB allocated.
  expect(by("sparse.img")?.blocks).toBeLessThanOrEqual(16);
}

async function annotate(ns: string, annotations: Record<string, string>, labels: Record<string, string> = {}): Promise<void> {
  await admin().patch(`/api/v1/namespaces/${ns}`, { metadata: { annotations, labels } }, "merge");
}

const condition = (obj: { status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } }, type: string) =>
  obj.status?.conditions?.find((c) => c.type === type);

describe("the local cluster's storage", () => {
  it("snapshots and clones a hostile tree faithfully, without blocking on its FIFO", async () => {
    const ns = await createNamespace("fidelity");
    await pvcWithData(ns, "app", {});
    const source = await volumeDir(ns, "app");
    await hostileTree(source);
    const before = await faithful(source);
    expectHostile(before);

    await admin().create(`${SNAP}/namespaces/${ns}/volumesnapshots`, {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshot",
      metadata: { name: "snap" },
      spec: { source: { persistentVolumeClaimName: "app" } },
    });
    await waitFor(
      async () => (await admin().get<{ status?: { readyToUse?: boolean } }>(`${SNAP}/namespaces/${ns}/volumesnapshots/snap`)).status?.readyToUse === true,
      "the snapshot ready",
      60_000,
    );
    const fromSnapshot = { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "2Gi" } } };
    await admin().create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "restored" },
      spec: { ...fromSnapshot, dataSource: { apiGroup: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: "snap" } },
    });
    await admin().create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "clone" },
      spec: { ...fromSnapshot, dataSource: { kind: "PersistentVolumeClaim", name: "app" } },
    });

    expect(await faithful(await volumeDir(ns, "restored"))).toEqual(before);
    expect(await faithful(await volumeDir(ns, "clone"))).toEqual(before);
  });
});

describe("a backup and its restores", () => {
  it("keep every file and owner: from a tenant into the install namespace's repository, back into a new PVC elsewhere and over an existing PVC's stale files", async () => {
    await startWalle();
    // Walle's service account may point a tenant's BackupJob at the install namespace (the tenant guard); it is
    // what a forced backup or a schedule uses.
    const walle = await clientForServiceAccount(INSTALL, "walle-reconcile");
    const app = await createNamespace("fid-app");
    const repo = rest.repository("fidelity", "rest-secret-pw", `hostile-${app}`);
    const shared = `hostile-${app}`;
    await repositorySecret(INSTALL, shared, repo);
    await pvcWithData(app, "db", {});
    const source = await volumeDir(app, "db");
    await hostileTree(source);
    const before = await faithful(source);
    expectHostile(before);

    await walle.create(`/apis/ros.io/v1/namespaces/${app}/backupjobs`, {
      apiVersion: "ros.io/v1",
      kind: "BackupJob",
      metadata: { name: "nightly" },
      spec: { sourcePvc: "db", repository: { name: shared, namespace: INSTALL } },
    });
    const bj = await settled(app, "nightly", 300_000);
    expect({ phase: bj.status?.phase, state: condition(bj, "BackupState")?.reason }).toEqual({ phase: "Finished", state: "Completed" });
    expect(condition(bj, "FullFidelity")).toMatchObject({ status: "True", reason: "PrivilegedWorker" });
    const snapshotId = bj.status?.snapshotId ?? "";
    expect(snapshotId).toMatch(/^[0-9a-f]{64}$/);

    // (a) Into a new PVC of a third namespace: restored beside the repository, then handed over.
    const third = await createNamespace("fid-new");
    await walle.create(`/apis/ros.io/v1/namespaces/${third}/backuprestores`, {
      apiVersion: "ros.io/v1",
      kind: "BackupRestore",
      metadata: { name: "back" },
      spec: { repository: { name: shared, namespace: INSTALL }, source: { snapshotId }, target: { newPvc: { name: "db", size: "2Gi" } } },
    });
    const a = await settledRestore(third, "back", 300_000);
    expect({ phase: a.status?.phase, fidelity: condition(a, "FullFidelity")?.status }, JSON.stringify(a.status)).toEqual({
      phase: "Finished",
      fidelity: "True",
    });
    expect(await faithful(await volumeDir(third, "db"))).toEqual(before);

    // (b) Over an existing PVC full of stale files, in a namespace an admin allowed full-fidelity workers in, with
    // its own Secret for the same repository. Files not in the snapshot go; the volume's lost+found stays.
    const existing = await createNamespace("fid-existing");
    await annotate(existing, { [PRIVILEGED_WORKERS_ANNOTATION]: "true" }, { "pod-security.kubernetes.io/enforce": "baseline" });
    await repositorySecret(existing, "repo", repo);
    await pvcWithData(existing, "db", { "stale.txt": "from before the disaster", "pgdata/postmaster.pid": "4242", "many/f-9999": "not in the backup" });
    const target = await volumeDir(existing, "db");
    await mkdir(path.join(target, "lost+found"), { mode: 0o700 });
    await admin().create(`/apis/ros.io/v1/namespaces/${existing}/backuprestores`, {
      apiVersion: "ros.io/v1",
      kind: "BackupRestore",
      metadata: { name: "over" },
      spec: { repository: { name: "repo", namespace: existing }, source: { snapshotId }, target: { existingPvc: "db" } },
    });
    const b = await settledRestore(existing, "over", 300_000);
    expect({ phase: b.status?.phase, fidelity: condition(b, "FullFidelity")?.status }).toEqual({ phase: "Finished", fidelity: "True" });
    const after = await faithful(target);
    expect(after.filter((e) => e.path !== "lost+found")).toEqual(before);
    expect(after.find((e) => e.path === "lost+found")).toMatchObject({ type: "dir", mode: "700" });
  });

  it("made by an unprivileged worker that cannot read the tree ends Failed/Incomplete, naming what it could not read", async () => {
    await startWalle();
    const ns = await createNamespace("incomplete");
    // The tenant's own repository, in a namespace enforcing Pod Security restricted: the unprivileged worker is admitted.
    await annotate(ns, {}, { "pod-security.kubernetes.io/enforce": "restricted" });
    await repositorySecret(ns, "repo", rest.repository("fidelity", "rest-secret-pw", ns));
    await pvcWithData(ns, "db", {});
    await hostileTree(await volumeDir(ns, "db"));
    await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, {
      apiVersion: "ros.io/v1",
      kind: "BackupJob",
      metadata: { name: "nightly" },
      spec: { sourcePvc: "db", repository: { name: "repo", namespace: ns } },
    });
    const bj = await settled(ns, "nightly", 300_000);
    const state = condition(bj, "BackupState");
    expect({ phase: bj.status?.phase, reason: state?.reason }, JSON.stringify(bj.status)).toEqual({ phase: "Failed", reason: "Incomplete" });
    expect(state?.message).toMatch(/could not be read; the snapshot was made without them\. First: .*(pgdata|secret).*permission denied/);
    expect(condition(bj, "FullFidelity")).toMatchObject({
      status: "False",
      reason: "UnprivilegedWorker",
      message: expect.stringMatching(new RegExp(`namespace ${ns} does not allow full-fidelity workers`)),
    });
    // The partial snapshot is recorded, so nobody mistakes it for nothing, or for a whole one.
    expect((bj as BackupJobObj).status?.snapshotId).toMatch(/^[0-9a-f]{64}$/);
    const events = await admin().get<{ items: { type: string; reason: string; regarding: { name: string } }[] }>(
      `/apis/events.k8s.io/v1/namespaces/${ns}/events`,
    );
    expect(events.items.filter((e) => e.regarding.name === "nightly" && e.type === "Warning").map((e) => e.reason)).toContain("BackupFailed");
  });
});

describe("Pod Security admission", () => {
  /** The worker pod of a command and mode, as the Job controller would create it, sent with dryRun=All. */
  async function admitted(ns: string, command: "backup" | "restore" | "prune", privileged: boolean): Promise<true | string> {
    const job = workerJob({
      metadata: { name: "w", namespace: ns, labels: {} },
      config: { ...testConfig, workerImage: WORKER_IMAGE },
      command,
      repositorySecret: "repo",
      ...(command === "prune" ? {} : { volume: { claimName: "data", readOnly: command === "backup" } }),
      env: {},
      mode: workerMode(privileged, undefined),
    });
    await workerAccount(ns);
    const pod = { apiVersion: "v1", kind: "Pod", metadata: { generateName: "worker-" }, spec: (job.spec as { template: { spec: unknown } }).template.spec };
    return admin()
      .create(`/api/v1/namespaces/${ns}/pods`, pod, { dryRun: "All" })
      .then(
        () => true as const,
        (e: unknown) => String(e instanceof Error ? e.message : e),
      );
  }

  it("admits full-fidelity workers at baseline and unprivileged ones at restricted, and the install namespace enforces baseline", async () => {
    const installLabels = (await admin().get<{ metadata: { labels?: Record<string, string> } }>(`/api/v1/namespaces/${INSTALL}`)).metadata.labels;
    expect(installLabels?.["pod-security.kubernetes.io/enforce"]).toBe("baseline");
    const baseline = await createNamespace("psa-baseline");
    await annotate(baseline, {}, { "pod-security.kubernetes.io/enforce": "baseline" });
    const restricted = await createNamespace("psa-restricted");
    await annotate(restricted, {}, { "pod-security.kubernetes.io/enforce": "restricted" });

    expect(await admitted(baseline, "backup", true)).toBe(true);
    expect(await admitted(baseline, "restore", true)).toBe(true);
    for (const command of ["backup", "restore", "prune"] as const) expect(await admitted(restricted, command, false)).toBe(true);
    // And restricted is not enough for full fidelity: the real admission says why.
    expect(await admitted(restricted, "backup", true)).toMatch(/violates PodSecurity "restricted:latest".*(runAsNonRoot|capabilities)/);
  });
});

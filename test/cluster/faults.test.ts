// Faults a backup meets in a real cluster, each ending Finished, or Failed with a message that says what to do, with
// nothing of Walle's left behind and the repository clean by `restic check`: the repository's rest-server down for
// the first attempt, and its disk full. (The function killed between any two steps is in reconcile-resilience.test.ts.)
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, inject, it, onTestFinished } from "vitest";
import { freePort } from "../../cluster/processes.ts";
import { Label } from "../../lib/api/constants.ts";
import { restic, startRestServer, tempDir } from "../integration/worker-harness.ts";
import { csiStorage, expectNoLeftovers, PASSWORD, pvcWithData, settled } from "../support/backup-fixtures.ts";
import { admin, createNamespace, waitFor } from "../support/kube.ts";
import { startWalle } from "../support/walle.ts";

const run = promisify(execFile);
const USER = "backup";

interface PodObj {
  metadata: { name: string };
  status?: { phase?: string; containerStatuses?: { state?: { terminated?: { message?: string } } }[] };
}

/** The worker pods of the BackupJob `name` in `ns`, with their phases and termination messages. */
async function workerPods(ns: string, name: string): Promise<PodObj[]> {
  return (await admin().get<{ items: PodObj[] }>(`/api/v1/namespaces/${ns}/pods`, { labelSelector: `${Label.BackupJob}=${name}` })).items;
}

const terminationOf = (p: PodObj) => p.status?.containerStatuses?.[0]?.state?.terminated?.message ?? "";

/** A repository Secret as restic's docs describe it, with the worker's UNREACHABLE_TIMEOUT, which any Secret may set. */
async function secret(ns: string, repository: string, unreachable: string): Promise<void> {
  await admin().create(`/api/v1/namespaces/${ns}/secrets`, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "repo" },
    stringData: { RESTIC_REPOSITORY: repository, RESTIC_PASSWORD: PASSWORD, INITIALIZE_REPO: "true", UNREACHABLE_TIMEOUT: unreachable },
  });
}

async function backupJob(ns: string, name: string): Promise<void> {
  await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, {
    apiVersion: "ros.io/v1",
    kind: "BackupJob",
    metadata: { name },
    spec: { sourcePvc: "data", repository: { name: "repo", namespace: ns } },
  });
}

describe("a backup meets a failing repository", () => {
  it("with the rest-server down for the first attempt: the Job's next attempt backs up once it is back, Finished with one snapshot", async () => {
    await startWalle();
    const before = await csiStorage();
    const ns = await createNamespace("fault-down");
    const host = inject("nodeHostIp") ?? "127.0.0.1";
    const port = await freePort(host);
    const dataDir = await tempDir("rest-down");
    const repository = `rest:http://${USER}:rest-secret@${host}:${port}/${USER}/${ns}`;
    await pvcWithData(ns, "data", { "orders.csv": "id,total\n1,9.99\n" });
    await secret(ns, repository, "3s");
    await backupJob(ns, "first");

    // The first attempt finds nothing listening and gives up after the Secret's 3 s; then the server comes up where
    // the Secret says it is, and the Job's retry (its backoffLimit) finds it.
    const failedFirst = await waitFor(
      async () => (await workerPods(ns, "first")).find((p) => p.status?.phase === "Failed"),
      "the first worker attempt to fail",
      120_000,
    );
    expect(terminationOf(failedFirst)).toMatch(/"reason":"Unreachable"/);
    const rest = await startRestServer({ dataDir, users: { [USER]: "rest-secret" }, host, port });
    onTestFinished(() => rest.stop());

    const bj = await settled(ns, "first", 180_000);
    expect(bj.status?.phase).toBe("Finished");
    const env = { RESTIC_REPOSITORY: repository, RESTIC_PASSWORD: PASSWORD };
    const snapshots = JSON.parse(await restic(["snapshots", "--json", "--no-lock"], env)) as { id: string }[];
    expect(snapshots.map((s) => s.id)).toEqual([bj.status?.snapshotId]);
    expect(await restic(["check"], env)).toMatch(/no errors were found/);
    await expectNoLeftovers([ns], before);
  });

  it("with the repository's disk full: Failed, saying the storage is full, with no snapshot; after space is freed the next backup Finishes", async () => {
    await startWalle();
    const before = await csiStorage();
    const ns = await createNamespace("fault-full");
    // The server's disk: a 6 MiB tmpfs, which restic's repository (a few KiB) fits and 24 MiB of random data does not.
    const disk = path.join(await tempDir("rest-full"), "disk");
    await mkdir(disk);
    await run("mount", ["-t", "tmpfs", "-o", "size=6m", "tmpfs", disk]);
    onTestFinished(async () => {
      await run("umount", ["-l", disk]).catch(() => {});
    });
    const rest = await startRestServer({ dataDir: disk, users: { [USER]: "rest-secret" } });
    onTestFinished(() => rest.stop());
    const repository = rest.repository(USER, "rest-secret", ns);
    const { randomBytes } = await import("node:crypto");
    await pvcWithData(ns, "data", { "media/video.bin": randomBytes(24 * 1024 * 1024), "notes.txt": "small\n" });
    await secret(ns, repository, "5s");
    await backupJob(ns, "full");

    const bj = await settled(ns, "full", 240_000);
    expect(bj.status?.phase).toBe("Failed");
    const state = bj.status?.conditions?.find((c) => c.type === "BackupState");
    expect(state).toMatchObject({ status: "False", reason: "RepositoryFull" });
    expect(state?.message).toMatch(/^The storage of .* is full: .*507 Insufficient Storage.*\. No snapshot was made\. Free space/);
    const env = { RESTIC_REPOSITORY: repository, RESTIC_PASSWORD: PASSWORD };
    expect(JSON.parse(await restic(["snapshots", "--json", "--no-lock"], env))).toEqual([]);
    await expectNoLeftovers([ns], before);

    // More space (the server's disk grown), and the next backup of the same PVC Finishes; the repository is clean.
    await run("mount", ["-o", "remount,size=96m", disk]);
    await backupJob(ns, "after");
    const after = await settled(ns, "after", 180_000);
    expect(after.status?.phase).toBe("Finished");
    expect(await restic(["check"], env)).toMatch(/no errors were found/);
    await expectNoLeftovers([ns], before);
  }, 600_000);
});

// `npm start -- --once`, as a user runs it: its own local cluster with Knative Serving and Eventing, Walle installed
// by `kubectl apply -k .` with the getting-started schedule on a real rest-server with htpasswd, the tick fired by
// KEDA, one scheduled backup of the example workload, the repository's snapshot list, the reconcile revision's pods
// going 0 → 1 → 0, exit 0, and everything it started stopped.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { describe, expect, inject, it, onTestFinished } from "vitest";
import { repoRoot } from "../../cluster/toolchain.ts";
import { startRestServer, tempDir } from "../integration/worker-harness.ts";
import { PASSWORD, pvcWithData, repositorySecret, settled } from "../support/backup-fixtures.ts";
import { admin, createNamespace, waitFor } from "../support/kube.ts";

describe("npm start -- --once", () => {
  it("backs up the example on schedule, lists the snapshot and exits 0", async () => {
    const env = { ...process.env };
    delete env.WALLE_CLUSTER_DIR;
    const child = spawn(process.execPath, [path.join(repoRoot, "scripts", "start.ts"), "--once"], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"], env });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
    expect(code, out).toBe(0);
    const lines = out.split("\n");
    expect(lines).toContainEqual(expect.stringMatching(/^walle: BackupSet example-schedule-[0-9a-z]+: Finished 1\/1$/));
    const id = /^walle: BackupJob default\/\S+: restic snapshot ([0-9a-f]{64})$/m.exec(out)?.[1];
    expect(id, out).toBeDefined();
    // restic's own table: the new snapshot by its short id, of this cluster's host, with the PVC's path.
    const row = lines.find((l) => l.startsWith(id?.slice(0, 8) ?? "-"));
    expect(row, out).toMatch(/my-cluster/);
    // The reconcile function was a pod only while there was work: from zero for the backup, at zero again at the end.
    const pods = lines.filter((l) => l.startsWith("walle: reconcile pods: "));
    expect(pods, out).toContain("walle: reconcile pods: 0 → 1");
    expect(pods.at(-1), out).toMatch(/^walle: reconcile pods: \d+ → 0$/);
    expect(out).toMatch(/^1 snapshots$/m);
    // Everything it started is gone with its state directory.
    const state = /^walle: the cluster's state is in (\/\S+)$/m.exec(out)?.[1];
    expect(state, out).toBeDefined();
    expect(existsSync(state ?? "/")).toBe(false);
  }, 900_000);
});

describe("npm start -- --kubeconfig", () => {
  it("runs the functions on this machine against the cluster the file names, as their own service accounts, until Ctrl-C", async () => {
    const child = spawn(process.execPath, [path.join(repoRoot, "scripts", "start.ts"), "--kubeconfig", inject("kubeconfig"), "--tick-seconds", "5"], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WALLE_SNAPSHOT_TIMEOUT_SECONDS: "120" },
    });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (out += c.toString()));
    const closed = new Promise<number | null>((resolve) => child.once("close", resolve));
    onTestFinished(() => {
      child.kill("SIGKILL");
    });
    await waitFor(async () => /^walle: tick: \d+ schedules, \d+ actions/m.test(out) || child.exitCode !== null, "its first tick", 60_000);
    expect(out).toMatch(/^walle: against https:\/\/127\.0\.0\.1:\d+: the reconcile function listens on http:\/\/127\.0\.0\.1:\d+\//m);

    // A BackupJob made with kubectl's rights is driven to the end by the function on this machine.
    const ns = await createNamespace("dev-loop");
    const rest = await startRestServer({ dataDir: await tempDir("dev-loop"), users: { backup: "rest-secret" } });
    onTestFinished(() => rest.stop());
    await pvcWithData(ns, "data", { "notes.txt": "from the development loop\n" });
    await repositorySecret(ns, "repo", rest.repository("backup", "rest-secret", ns), PASSWORD);
    await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, {
      apiVersion: "ros.io/v1",
      kind: "BackupJob",
      metadata: { name: "dev" },
      spec: { sourcePvc: "data", repository: { name: "repo", namespace: ns } },
    });
    const bj = await settled(ns, "dev", 120_000);
    expect(bj.status?.phase, out).toBe("Finished");

    child.kill("SIGINT");
    expect(await closed, out).toBe(0);
    expect(out).toMatch(/^walle: stopping$/m);
  }, 300_000);
});

// The reconcile function as a workstation runs it against a real cluster: its real entry point as a child process
// whose KUBECONFIG's only credential is an exec credential plugin (a script printing an ExecCredential with a
// token the harness minted for walle-reconcile), fed by Knative's ApiServerSource adapter. It drives a BackupJob to
// Finished as that service account. The test knows the function only by its process and environment.
import { chmod, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from "vitest";
import { startEventSource } from "../../cluster/event-source.ts";
import { serviceAccountToken } from "../../cluster/index.ts";
import { writeKubeconfig } from "../../cluster/pki.ts";
import { freePort, startProcess, tail, type Managed } from "../../cluster/processes.ts";
import { LOCAL_CLUSTER_NAME, LOCAL_WORKER_IMAGE } from "../../cluster/run-walle.ts";
import { repoRoot } from "../../cluster/toolchain.ts";
import { INSTALL_NAMESPACE, ServiceAccount, serviceAccountUser } from "../../lib/api/constants.ts";
import { clientFromKubeconfig } from "../../lib/k8s/kubeconfig.ts";
import { createLogger } from "../../lib/log.ts";
import { listSnapshots, startRestServer, tempDir, type RestServer } from "../integration/worker-harness.ts";
import { PASSWORD, pvcWithData, repositorySecret, settled } from "../support/backup-fixtures.ts";
import { admin, createNamespace, waitFor } from "../support/kube.ts";

const USER = "backup";
const RECONCILE_USER = serviceAccountUser(INSTALL_NAMESPACE, ServiceAccount.Reconcile);

let rest: RestServer;

beforeAll(async () => {
  rest = await startRestServer({ dataDir: await tempDir("rest"), users: { [USER]: "rest-secret" } });
});
afterAll(async () => rest?.stop());

interface ExecKubeconfig {
  readonly file: string;
  /** Counts the plugin's runs: one line each. */
  runs(): Promise<number>;
}

/** A kubeconfig for walle-reconcile whose user is only an exec plugin: a script printing a minted token. */
async function execKubeconfig(dir: string): Promise<ExecKubeconfig> {
  const { token, expirationTimestamp } = await serviceAccountToken(admin(), INSTALL_NAMESPACE, ServiceAccount.Reconcile);
  const credential = path.join(dir, "credential.json");
  const counter = path.join(dir, "plugin-runs");
  const plugin = path.join(dir, "credential-plugin.sh");
  await writeFile(
    credential,
    JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential", status: { token, expirationTimestamp } }),
    { mode: 0o600 },
  );
  await writeFile(plugin, `#!/bin/sh\necho run >> '${counter}'\ncat '${credential}'\n`);
  await chmod(plugin, 0o700);
  const file = await writeKubeconfig(path.join(dir, "exec.kubeconfig"), inject("clusterServer"), path.join(inject("clusterStateDir"), "pki", "ca.crt"), {
    name: RECONCILE_USER,
    exec: { command: plugin },
  });
  const runs = async () => (await readFile(counter, "utf8").catch(() => "")).split("\n").filter((l) => l === "run").length;
  return { file, runs };
}

/** functions/reconcile/main.ts as a process, listening on a free port, stopped (SIGTERM, drained) when the test ends. */
async function startReconcile(dir: string, kubeconfig: string): Promise<{ url: string; process: Managed }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const logFile = path.join(dir, "reconcile.log");
  const proc = startProcess("walle-reconcile", process.execPath, [path.join(repoRoot, "functions", "reconcile", "main.ts")], logFile, {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    KUBECONFIG: kubeconfig,
    PORT: String(port),
    WALLE_WORKER_IMAGE: LOCAL_WORKER_IMAGE,
    WALLE_CLUSTER_NAME: LOCAL_CLUSTER_NAME,
    WALLE_PROGRESS_SINK_URL: url,
    WALLE_SNAPSHOT_TIMEOUT_SECONDS: "120",
    WALLE_WORKER_DEADLINE_SECONDS: "300",
    LOG_LEVEL: "debug",
  });
  onTestFinished(() => proc.stop(10_000));
  let up = false;
  const died = proc.exited.then(async (code) => {
    if (!up) throw new Error(`walle-reconcile exited (${code}) before it was ready:\n${await tail(logFile)}`);
  });
  died.catch(() => {});
  await Promise.race([waitFor(async () => (await fetch(`${url}readyz`)).ok, `walle-reconcile ready at ${url}`, 60_000), died]);
  up = true;
  return { url, process: proc };
}

describe("reconcile run from a kubeconfig with an exec credential plugin", () => {
  it("drives a BackupJob to Finished as walle-reconcile", { timeout: 240_000 }, async () => {
    const dir = await tempDir("exec-credentials");
    const kubeconfig = await execKubeconfig(dir);
    const user = (JSON.parse(await readFile(kubeconfig.file, "utf8")) as { users: { user: Record<string, unknown> }[] }).users[0]?.user;
    expect(Object.keys(user ?? {})).toEqual(["exec"]);

    const walle = await startReconcile(dir, kubeconfig.file);
    const source = await startEventSource({
      api: admin(),
      stateDir: inject("clusterStateDir"),
      sink: walle.url,
      log: createLogger({ function: "event-source", level: "silent" }),
    });
    onTestFinished(() => source.stop());

    const ns = await createNamespace("exec-creds");
    const repo = rest.repository(USER, "rest-secret", `exec-${ns}`);
    await pvcWithData(ns, "data", { "hello.txt": "hello" });
    await repositorySecret(ns, "repo", repo);
    await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, {
      apiVersion: "ros.io/v1",
      kind: "BackupJob",
      metadata: { name: "exec" },
      spec: { sourcePvc: "data", repository: { name: "repo", namespace: ns } },
    });

    const bj = await settled(ns, "exec", 150_000).catch(async (err: unknown) => {
      throw new Error(`${String(err)}\nwalle-reconcile's log:\n${await tail(walle.process.logFile, 40)}`, { cause: err });
    });
    expect({ phase: bj.status?.phase, logs: bj.status?.logs }).toMatchObject({ phase: "Finished" });
    expect(bj.status?.snapshotId).toMatch(/^[0-9a-f]{64}$/);
    const snapshots = await listSnapshots({ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD });
    expect(snapshots.map((s) => s.id)).toEqual([bj.status?.snapshotId]);
    expect(walle.process.child.exitCode).toBeNull();
    // Only the function has run the plugin so far; its credential is cached until it expires.
    const runs = await kubeconfig.runs();
    expect(runs).toBeGreaterThanOrEqual(1);

    // The kubeconfig authenticates as walle-reconcile, through the same path the function took.
    const api = await clientFromKubeconfig(kubeconfig.file);
    onTestFinished(() => api.close());
    const review = await api.create<{ status: { userInfo: { username: string } } }>("/apis/authentication.k8s.io/v1/selfsubjectreviews", {
      apiVersion: "authentication.k8s.io/v1",
      kind: "SelfSubjectReview",
    });
    expect(review.status.userInfo.username).toBe(RECONCILE_USER);
    expect(await kubeconfig.runs()).toBe(runs + 1);
  });
});

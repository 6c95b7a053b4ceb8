// npm start: Walle on the embedded local cluster. It brings up the real control plane with the upstream and
// Walle CRDs, the CSI driver, the real node and KEDA's operator, installs Walle's namespace and RBAC, runs the reconcile
// function fed by Knative's ApiServerSource adapter, and then applies the original Walle's examples unchanged (the
// workload, the repository Secret from restic-secret.env, the BackupJob) and prints the backup step by step
// until it ends. Then it installs the tick's ScaledJob (keda/, as shipped: KEDA runs the tick about every 5
// minutes) and the original README's getting-started schedule, and prints the scheduled run as it happens.
// It stays up until Ctrl-C, then stops everything it started.
//
//   npm start                 as above
//   npm start -- --no-demo    only the cluster and Walle; apply what you like with kubectl
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { parseEnv } from "node:util";
import { applyObjects, readManifestFiles, startCluster, STATE_ROOT } from "../cluster/index.ts";
import { installWalle, LOCAL_CLUSTER_NAME, runWalle } from "../cluster/run-walle.ts";
import { boundVolumeDir } from "../cluster/csi.ts";
import { repoRoot } from "../cluster/toolchain.ts";
import { createLogger } from "../lib/log.ts";

const demo = !process.argv.includes("--no-demo");
const say = (text: string) => console.log(`walle: ${text}`);
const stateDir = process.env.WALLE_CLUSTER_DIR ?? (await mkdtemp(path.join(STATE_ROOT, "walle-start-")));
const log = createLogger({ function: "walle-reconcile", level: process.env.LOG_LEVEL === "debug" ? "debug" : "warn" });

const started = Date.now();
say("starting the local cluster (the first run builds the toolchain, which takes minutes)");
const cluster = await startCluster({ stateDir, log: (msg) => (/^(Building|Built|Downloading)/.test(msg) ? say(msg) : undefined) });
await installWalle(cluster.api);
const walle = await runWalle({ admin: cluster.api, stateDir, log });
say(`up in ${((Date.now() - started) / 1000).toFixed(1)} s; the reconcile function listens on ${walle.url}`);
say(`for kubectl:  export KUBECONFIG=${cluster.kubeconfig}`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  say("stopping");
  await walle.stop();
  await cluster.stop();
  if (!process.env.WALLE_CLUSTER_DIR) await rm(stateDir, { recursive: true, force: true });
  process.exit(0);
}
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());

if (demo) {
  await runExample();
  await runSchedule();
}
say("press Ctrl-C to stop");

/** The original's getting-started, as `kubectl apply` would do it, then the BackupJob followed to its end. */
async function runExample(): Promise<void> {
  const examples = path.join(repoRoot, "examples");
  const inDefault = (objs: Awaited<ReturnType<typeof readManifestFiles>>) =>
    objs.map((o) => ({ ...o, metadata: { ...o.metadata, namespace: o.metadata.namespace ?? "default" } }));
  say("applying examples/workload.yml (a Deployment and its PVC example-volume)");
  await applyObjects(cluster.api, inDefault(await readManifestFiles([path.join(examples, "workload.yml")])));
  await workloadWriting();
  say("creating Secret restic-rest-config from examples/restic-secret.env");
  const env = parseEnv(await readFile(path.join(examples, "restic-secret.env"), "utf8"));
  await applyObjects(cluster.api, [
    { apiVersion: "v1", kind: "Secret", metadata: { name: "restic-rest-config", namespace: "default" }, ...{ stringData: env } },
  ]);
  say("applying examples/backup-job.yml");
  await applyObjects(cluster.api, inDefault(await readManifestFiles([path.join(examples, "backup-job.yml")])));

  let last = "";
  for (;;) {
    const bj = await cluster.api.get<{ status?: { phase?: string; snapshotId?: string; logs?: string; conditions?: { type: string; message: string }[] } }>(
      "/apis/ros.io/v1/namespaces/default/backupjobs/example-backup-job",
    );
    const phase = bj.status?.phase ?? "NotStarted";
    if (phase !== last) {
      const why = bj.status?.conditions?.map((c) => `${c.type}: ${c.message}`).join(" | ");
      say(`BackupJob default/example-backup-job: ${phase}${why ? ` (${why})` : ""}`);
      last = phase;
    }
    if (phase === "Finished" || phase === "Failed") {
      if (bj.status?.snapshotId) say(`restic snapshot ${bj.status.snapshotId}`);
      if (bj.status?.logs) say(`worker: ${bj.status.logs}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The original README's getting-started step 3 (every pod's PVCs, every 6 hours, into walle/restic-repo), run by
 * the tick that KEDA starts from keda/scaledjob.yaml on its own cadence: the first window opens within 5 minutes.
 */
async function runSchedule(): Promise<void> {
  say("installing keda/scaledjob.yaml: KEDA's operator runs the tick in a Job about every 5 minutes");
  const [scaledJob] = await readManifestFiles([path.join(repoRoot, "keda", "scaledjob.yaml")]);
  const spec = (scaledJob as unknown as { spec: { jobTargetRef: { template: { spec: { containers: { env: { name: string; value: string }[] }[] } } } } }).spec;
  for (const e of spec.jobTargetRef.template.spec.containers[0]?.env ?? []) {
    if (e.name === "WALLE_CLUSTER_NAME") e.value = LOCAL_CLUSTER_NAME;
    if (e.name === "WALLE_PROGRESS_SINK_URL") e.value = walle.url;
  }
  await applyObjects(cluster.api, [scaledJob as never]);
  say("creating namespace walle and Secret restic-repo there from examples/restic-secret.env (getting-started step 2)");
  const env = parseEnv(await readFile(path.join(repoRoot, "examples", "restic-secret.env"), "utf8"));
  await applyObjects(cluster.api, [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "walle" } },
    { apiVersion: "v1", kind: "Secret", metadata: { name: "restic-repo", namespace: "walle" }, ...{ stringData: env } },
  ]);
  say("applying examples/getting-started-schedule.yml (getting-started step 3); waiting for the tick");
  await applyObjects(cluster.api, await readManifestFiles([path.join(repoRoot, "examples", "getting-started-schedule.yml")]));
  let last = "";
  for (;;) {
    const sets = await cluster.api.get<{ items: { metadata: { name: string }; status?: { state?: string; completions?: string } }[] }>("/apis/ros.io/v1/backupsets", {
      labelSelector: "ros.io/backup-schedule=example-schedule",
    });
    const set = sets.items[0];
    const now = set ? `BackupSet ${set.metadata.name}: ${set.status?.state ?? "Running"} ${set.status?.completions ?? ""}`.trim() : "";
    if (now && now !== last) {
      say(now);
      last = now;
    }
    if (set && (set.status?.state === "Finished" || set.status?.state === "FinishedWithFailures")) {
      const schedule = await cluster.api.get<{ status?: { nextBackupRun?: string } }>("/apis/ros.io/v1/backupschedules/example-schedule");
      say(`the schedule's next backup is due at ${schedule.status?.nextBackupRun ?? "(not yet known)"}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Waits until the example's container (alpine, here its local stand-in) has written its first line of datelog. */
async function workloadWriting(): Promise<void> {
  say("waiting for the example workload's container to write its first datelog line (it writes every 10 s)");
  for (;;) {
    const dir = await boundVolumeDir(cluster.api, stateDir, "default", "example-volume");
    const file = dir ? path.join(dir, "datelog") : undefined;
    const written = file ? await stat(file).catch(() => undefined) : undefined;
    if (file && written && written.size > 0) {
      say(`example-volume's datelog: ${(await readFile(file, "utf8")).trim().split("\n").length} line(s), written by the container as uid ${written.uid}, gid ${written.gid}, mode ${(written.mode & 0o7777).toString(8)}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

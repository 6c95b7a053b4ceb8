// npm start: Walle's main job on the embedded local cluster, installed as the README installs it. It brings up the
// real control plane with the upstream CRDs, the CSI driver, the real node, KEDA's operator, and Knative Serving and
// Eventing (cluster/knative-serving.ts, cluster/knative-eventing.ts); runs `kubectl apply -k .`, so every function
// is a pod from its image: reconcile the shipped Knative Service's revision, fed by the adapter Eventing makes of
// the shipped ApiServerSource, the tick KEDA's Job of the shipped ScaledJob. It starts a local rest-server
// repository with htpasswd, then follows the original README's getting-started: the Secret `restic-repo` in
// namespace walle (with INITIALIZE_REPO, RESTIC_PASSWORD, RESTIC_REST_USERNAME and RESTIC_REST_PASSWORD, the
// repository URL added), the example workload (examples/workload.yml) and the `example-schedule` BackupSchedule
// (examples/getting-started-schedule.yml). It prints what happens as it happens: the reconcile revision's pods
// coming and going, the snapshot, the worker's progress, restic's snapshot id, the BackupSet's completions. It
// serves until Ctrl-C, then stops everything it started.
//
//   npm start                 as above; KEDA runs the tick as shipped, about every 5 minutes
//   npm start -- --once       one scheduled backup of the example (the installed ScaledJob's window every 2
//                             minutes, polled every 5 s), the repository's snapshot list, the reconcile revision
//                             back at zero pods, and exit: 0 if the BackupSet Finished
//   npm start -- --no-demo    only the cluster and Walle (the tick included); apply what you like with kubectl
//   npm start -- --kubeconfig <file> [--tick-seconds 300]
//                             no local cluster: the functions run on this machine against the cluster that file's
//                             current context names, as the original's development loop ran its operator (Walle
//                             installed there first, `kubectl apply -k .`): reconcile as service account
//                             walle-reconcile, listening on loopback, fed by Knative's ApiServerSource adapter as
//                             walle-apiserversource, and the tick's command as walle-tick every --tick-seconds.
//                             WALLE_WORKER_IMAGE, WALLE_CLUSTER_NAME and WALLE_CONFIG are read as the functions read them.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { applyObjects, readManifestFiles, startCluster, STATE_ROOT } from "../cluster/index.ts";
import { runTickCommand, runWalle } from "../cluster/run-walle.ts";
import { boundVolumeDir } from "../cluster/csi.ts";
import { localizeScaledJob } from "../cluster/keda.ts";
import { waitUntil } from "../cluster/processes.ts";
import type { KubeObject } from "../lib/k8s/informer.ts";
import { Informer } from "../lib/k8s/informer.ts";
import { nodeNetwork } from "../cluster/node.ts";
import { startRestServer } from "../cluster/rest-server.ts";
import { repoRoot, resolveResticBinaries } from "../cluster/toolchain.ts";
import { INSTALL_NAMESPACE, Label, ServiceAccount } from "../lib/api/constants.ts";
import { getOrNull } from "../lib/k8s/actions.ts";
import { clientFromKubeconfig } from "../lib/k8s/kubeconfig.ts";
import { createLogger } from "../lib/log.ts";

const { values: flags } = parseArgs({
  options: {
    once: { type: "boolean", default: false },
    "no-demo": { type: "boolean", default: false },
    kubeconfig: { type: "string" },
    "tick-seconds": { type: "string", default: "300" },
  },
  strict: true,
});
const say = (text: string) => console.log(`walle: ${text}`);
const log = createLogger({ function: "walle-reconcile", level: process.env.LOG_LEVEL === "debug" ? "debug" : "warn" });
if (flags.kubeconfig) await againstCluster(flags.kubeconfig, Number(flags["tick-seconds"]));
const stateDir = process.env.WALLE_CLUSTER_DIR ?? (await mkdtemp(path.join(STATE_ROOT, "walle-start-")));

const started = Date.now();
say("starting the local cluster with Knative Serving and Eventing (the first run builds the toolchain, which takes minutes)");
const cluster = await startCluster({
  stateDir,
  walleCrds: false,
  knativeServing: true,
  knativeEventing: true,
  log: (msg) => (/^(Building|Built|Downloading|Knative \w+ is ready)/.test(msg) ? say(msg) : undefined),
});
say("kubectl apply -k . (Walle as the README installs it)");
await promisify(execFile)("kubectl", ["--kubeconfig", cluster.kubeconfig, "apply", "-k", repoRoot], { maxBuffer: 16 * 1024 * 1024 });
const reconcileUrl = await serviceReady();
const revisionPods = await followRevision();
say("waiting for the revision's first pod to go: Knative scales the function to zero while nothing asks for it");
await waitUntil("the reconcile revision at zero pods", async () => revisionPods.count() === 0, 300_000);
const bins = await resolveResticBinaries();
// The repository: a real rest-server with htpasswd and private repositories, where the node's pods reach it.
const user = { name: "walle", password: randomBytes(12).toString("hex") };
const restServer = await startRestServer({
  binary: bins.restServer,
  dataDir: path.join(stateDir, "repository"),
  users: { [user.name]: user.password },
  host: nodeNetwork(stateDir).hostIp,
});
const repository = {
  RESTIC_REPOSITORY: `rest:http://${nodeNetwork(stateDir).hostIp}:${restServer.port}/${user.name}/example`,
  RESTIC_PASSWORD: randomBytes(12).toString("hex"),
  RESTIC_REST_USERNAME: user.name,
  RESTIC_REST_PASSWORD: user.password,
};
say(
  `up in ${((Date.now() - started) / 1000).toFixed(1)} s; the reconcile function is the Knative Service ${reconcileUrl}, the repository is ${repository.RESTIC_REPOSITORY}`,
);
say(`for kubectl:  export KUBECONFIG=${cluster.kubeconfig}`);
say(`the cluster's state is in ${stateDir}`);

let stopping = false;
async function stop(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    say("stopping");
    revisionPods.stop();
    await restServer.stop();
    await cluster.stop();
    if (!process.env.WALLE_CLUSTER_DIR) await rm(stateDir, { recursive: true, force: true });
  }
  process.exit(code);
}
process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));

// The tick is part of the install, demo or not: schedules applied by hand run too.
if (flags.once) {
  say("the installed ScaledJob with a window every 2 minutes: KEDA's operator runs the tick in a Job");
  const { apiVersion, kind, metadata, spec } = await cluster.api.get<KubeObject & { spec: unknown }>(
    `/apis/keda.sh/v1alpha1/namespaces/${INSTALL_NAMESPACE}/scaledjobs/walle-tick`,
  );
  await applyObjects(cluster.api, [
    localizeScaledJob({ apiVersion, kind, metadata: { name: metadata.name, namespace: metadata.namespace }, spec } as KubeObject, { shortWindow: true }),
  ]);
} else say("KEDA's operator runs the tick in a Job about every 5 minutes, as the installed ScaledJob says");

if (!flags["no-demo"]) {
  await gettingStarted();
  const state = await followSchedule();
  if (flags.once) {
    await listSnapshots();
    say("waiting for the reconcile revision to go back to zero pods");
    await waitUntil("the reconcile revision at zero pods", async () => revisionPods.count() === 0, 300_000);
    await stop(state === "Finished" ? 0 : 1);
  }
}
say("press Ctrl-C to stop");

/** Waits until the installed Knative Service walle-reconcile is Ready; its address. */
async function serviceReady(): Promise<string> {
  let url = "";
  await waitUntil(
    "the walle-reconcile Knative Service Ready",
    async () => {
      const ksvc = await cluster.api.get<{ status?: { url?: string; conditions?: { type: string; status: string }[] } }>(
        `/apis/serving.knative.dev/v1/namespaces/${INSTALL_NAMESPACE}/services/walle-reconcile`,
      );
      url = ksvc.status?.url ?? "";
      return ksvc.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
    },
    300_000,
  );
  return url;
}

/** Prints the reconcile function's running pods as their number changes (Knative scales it between 0 and more). */
async function followRevision(): Promise<{ count(): number; stop(): void }> {
  const running = new Set<string>();
  let shown = -1;
  const show = () => {
    if (running.size === shown) return;
    say(`reconcile pods: ${shown < 0 ? "" : `${shown} → `}${running.size}`);
    shown = running.size;
  };
  const pods = new Informer<KubeObject & { status?: { phase?: string } }>(
    cluster.api,
    `/api/v1/namespaces/${INSTALL_NAMESPACE}/pods`,
    (type, pod) => {
      if (type === "delete" || pod.status?.phase !== "Running") running.delete(pod.metadata.name ?? "");
      else running.add(pod.metadata.name ?? "");
      show();
    },
    { labelSelector: "serving.knative.dev/service=walle-reconcile" },
  );
  await pods.start();
  show();
  return { count: () => running.size, stop: () => pods.stop() };
}

/** The original README's getting-started, as `kubectl apply` would do it, with the local repository. */
async function gettingStarted(): Promise<void> {
  say("creating namespace walle and Secret restic-repo there (getting-started step 2): the local rest-server, with INITIALIZE_REPO");
  await applyObjects(cluster.api, [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "walle" } },
    { apiVersion: "v1", kind: "Secret", metadata: { name: "restic-repo", namespace: "walle" }, ...{ stringData: { INITIALIZE_REPO: "true", ...repository } } },
  ]);
  say("applying examples/workload.yml (a Deployment and its PVC example-volume) in namespace default");
  const workload = await readManifestFiles([path.join(repoRoot, "examples", "workload.yml")]);
  await applyObjects(
    cluster.api,
    workload.map((o) => ({ ...o, metadata: { ...o.metadata, namespace: o.metadata.namespace ?? "default" } })),
  );
  await workloadWriting();
  say("applying examples/getting-started-schedule.yml (getting-started step 3); waiting for the tick");
  await applyObjects(cluster.api, await readManifestFiles([path.join(repoRoot, "examples", "getting-started-schedule.yml")]));
}

interface Job {
  metadata: { namespace: string; name: string };
  status?: {
    phase?: string;
    snapshotId?: string;
    progress?: { percent: number; filesDone?: number; bytesDone?: number };
    conditions?: { type: string; status: string; message: string }[];
  };
}

/** Prints the schedule's first BackupSet and its BackupJobs as they change, until the set ends; its end state. */
async function followSchedule(): Promise<string> {
  const seen = new Map<string, string>();
  const show = (key: string, line: string) => {
    if (seen.get(key) === line) return;
    seen.set(key, line);
    say(line);
  };
  for (;;) {
    const sets = await cluster.api.get<{ items: { metadata: { name: string }; status?: { state?: string; completions?: string } }[] }>(
      "/apis/ros.io/v1/backupsets",
      {
        labelSelector: `${Label.BackupSchedule}=example-schedule`,
      },
    );
    const set = sets.items[0];
    if (set) {
      const jobs = await cluster.api.get<{ items: Job[] }>("/apis/ros.io/v1/backupjobs", { labelSelector: `${Label.BackupSet}=${set.metadata.name}` });
      for (const job of jobs.items) {
        const id = `BackupJob ${job.metadata.namespace}/${job.metadata.name}`;
        const phase = job.status?.phase ?? "NotStarted";
        const snapshot = job.status?.conditions?.find((c) => c.type === "SnapshotReady");
        show(`${id} phase`, `${id}: ${phase}`);
        if (snapshot) show(`${id} snapshot`, `${id}: ${snapshot.message}`);
        const p = job.status?.progress;
        if (p && phase !== "Finished")
          show(
            `${id} progress`,
            `${id}: worker ${p.percent.toFixed(0)}%${p.filesDone !== undefined ? `, ${p.filesDone} files` : ""}${p.bytesDone !== undefined ? `, ${p.bytesDone} bytes` : ""}`,
          );
        if (job.status?.snapshotId) show(`${id} id`, `${id}: restic snapshot ${job.status.snapshotId}`);
        if (phase === "Failed") show(`${id} failed`, `${id}: ${job.status?.conditions?.map((c) => c.message).join(" | ") ?? ""}`);
      }
      const state = set.status?.state ?? "Running";
      show("set", `BackupSet ${set.metadata.name}: ${state} ${set.status?.completions ?? ""}`.trim());
      if (state === "Finished" || state === "FinishedWithFailures") {
        const schedule = await cluster.api.get<{ status?: { nextBackupRun?: string } }>("/apis/ros.io/v1/backupschedules/example-schedule");
        say(`the schedule's next backup is due at ${schedule.status?.nextBackupRun ?? "(not yet known)"}`);
        return state;
      }
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** `restic snapshots` of the repository, as its owner would list it. */
async function listSnapshots(): Promise<void> {
  const { stdout } = await promisify(execFile)(bins.restic, ["snapshots", "--no-lock"], {
    env: { PATH: process.env.PATH ?? "", HOME: stateDir, RESTIC_CACHE_DIR: path.join(stateDir, "restic-cache"), ...repository },
  });
  say("the repository's snapshots (restic snapshots):");
  for (const line of stdout.trimEnd().split("\n")) console.log(line);
}

/** Waits until the example's container (alpine, here its local stand-in) has written its first line of datelog. */
async function workloadWriting(): Promise<void> {
  say("waiting for the example workload's container to write its first datelog line (it writes every 10 s)");
  for (;;) {
    const dir = await boundVolumeDir(cluster.api, stateDir, "default", "example-volume");
    const file = dir ? path.join(dir, "datelog") : undefined;
    const written = file ? await stat(file).catch(() => undefined) : undefined;
    if (file && written && written.size > 0) {
      say(
        `example-volume's datelog: ${(await readFile(file, "utf8")).trim().split("\n").length} line(s), written by the container as uid ${written.uid}, gid ${written.gid}, mode ${(written.mode & 0o7777).toString(8)}`,
      );
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * `--kubeconfig <file>`: the functions on this machine against another cluster, until Ctrl-C. Each acts as its own
 * service account (tokens from the TokenRequest API, with the identity the file gives), so it can do there exactly
 * what its RBAC lets it do when deployed.
 */
async function againstCluster(file: string, tickSeconds: number): Promise<never> {
  if (!Number.isInteger(tickSeconds) || tickSeconds < 1) {
    console.error(`--tick-seconds ${flags["tick-seconds"]}: give a whole number of seconds, at least 1`);
    process.exit(2);
  }
  const admin = await clientFromKubeconfig(file);
  for (const account of [ServiceAccount.Reconcile, ServiceAccount.Tick, "walle-apiserversource"]) {
    const found = await getOrNull(admin, `/api/v1/namespaces/${INSTALL_NAMESPACE}/serviceaccounts/${account}`);
    if (!found) {
      console.error(`walle: ${admin.creds.server} has no service account ${INSTALL_NAMESPACE}/${account}: install Walle there first (kubectl apply -k .)`);
      process.exit(1);
    }
  }
  const dir = await mkdtemp(path.join(tmpdir(), "walle-dev-"));
  const env = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[0].startsWith("WALLE_") && e[1] !== undefined));
  const walle = await runWalle({ admin, stateDir: dir, log, env, host: "127.0.0.1" });
  say(`against ${admin.creds.server}: the reconcile function listens on ${walle.url}, fed by Knative's ApiServerSource adapter`);
  let timer: NodeJS.Timeout | undefined;
  const tick = async () => {
    const { code, stdout, stderr, report } = await runTickCommand({ admin, stateDir: dir, env });
    if (report)
      say(`tick: ${report.schedules} schedules, ${report.actions.length} actions${report.errors.length ? `, errors: ${report.errors.join("; ")}` : ""}`);
    else say(`tick failed (exit ${code}): ${stdout.trim().split("\n").at(-1) || stderr.trim().split("\n").at(-1) || ""}`);
    timer = setTimeout(() => void tick(), tickSeconds * 1000);
  };
  void tick();
  say(`the tick runs every ${tickSeconds} s; press Ctrl-C to stop`);
  const end = async () => {
    clearTimeout(timer);
    say("stopping");
    await walle.stop();
    admin.close();
    await rm(dir, { recursive: true, force: true });
    process.exit(0);
  };
  process.on("SIGINT", () => void end());
  process.on("SIGTERM", () => void end());
  return new Promise<never>(() => {});
}

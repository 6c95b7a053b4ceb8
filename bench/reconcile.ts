// Bench group `reconcile`: how quickly and cheaply the reconcile function answers events (docs/architecture.md, Targets), on a
// local cluster of its own (real kube-apiserver and kube-controller-manager, the local node and CSI driver, a
// real rest-server), started here and stopped at the end.
//
// - reconcile.api_requests_per_backupjob: the function runs in-process as its own service account, fed by the
//   local event source exactly as in `npm start`. One BackupJob (a small PVC, a repository in its namespace) is
//   created and followed until it has Finished and cleaned up; the figure is the function's own API requests
//   (RestClient.requests) over that life, counted until the function has made none for 2 s, so the events
//   that the clean-up itself causes are in it. The event source's reads are ApiServerSource's, and not counted.
// - reconcile.event_to_write_p50_ms / _p99_ms: a fresh in-process function with no event source. For each of
//   BENCH_RECONCILE_EVENTS (default 200) new BackupJobs, the Resource-mode `add` event ApiServerSource would
//   send is POSTed to it over loopback HTTP, one at a time. The function's RestClient is wrapped to stamp the
//   moment its first write request (any method but GET) is handed to the socket, on a kept-alive loopback
//   connection to the API server; the sample is that stamp minus the moment the POST began. The step measured
//   is NotStarted → CreatingSnapshot, which reads the most (PVC, StorageClass, VolumeSnapshotClasses, the
//   VolumeSnapshot) before it writes (the VolumeSnapshot). The first 10 events warm up and are not counted.
// - reconcile.start_to_first_event_ms: the function spawned as a child process as its pod runs it: the image's
//   Node flags and compile cache (scripts/bundle.ts nodeFlags, COMPILE_CACHE_DIR), WALLE_WORKER_IMAGE,
//   WALLE_CLUSTER_NAME and PORT, and the in-cluster credentials (its service account's token and the cluster's
//   CA mounted at /var/run/secrets/kubernetes.io/serviceaccount in a mount namespace of its own, and
//   KUBERNETES_SERVICE_HOST/PORT; no KUBECONFIG). The time from spawn until a POSTed `update` event for the
//   settled BackupJob is answered 2xx, polling every 2 ms while nothing listens yet. The median of 5 starts. The
//   entry is the esbuild bundle that startCluster built into the local reconcile image, which is what the image
//   runs; `node functions/reconcile/main.ts` also strips the types of every module as it loads it, which
//   production never does, so it runs too, without the image's flags, for context on stderr only.
// - reconcile.rss_after_start_mb: the last child's VmRSS (/proc/<pid>/status) when it logs that it started.
// - reconcile.rss_after_1000_events_mb: the last child's VmRSS after 1,000 Resource-mode `update` events for the
//   BackupJob, sent one at a time, each answered 2xx. In MB (10^6 bytes).
import { spawn, type ChildProcess } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { randomUUID } from "node:crypto";
import { EventMode, guessPlural } from "../cluster/event-source.ts";
import { boundVolumeDir } from "../cluster/csi.ts";
import { bundleFunction, fillCompileCache, nodeFlags } from "../scripts/bundle.ts";
import { serviceAccountToken, startCluster, STATE_ROOT, type Cluster } from "../cluster/index.ts";
import { freePort } from "../cluster/processes.ts";
import { startRestServer } from "../cluster/rest-server.ts";
import { installWalle, LOCAL_CLUSTER_NAME, LOCAL_WORKER_IMAGE, runWalle } from "../cluster/run-walle.ts";
import { resolveResticBinaries } from "../cluster/toolchain.ts";
import { INSTALL_NAMESPACE, ServiceAccount } from "../lib/api/constants.ts";
import type { ChangeType, KubeObject } from "../lib/k8s/informer.ts";
import type { RestClient } from "../lib/k8s/rest.ts";
import { createLogger } from "../lib/log.ts";
import { figure, type Figure } from "./figures.ts";

const reconcileMain = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../functions/reconcile/main.ts");
const NS = "bench";
const WARM_UP = 10;
const say = (text: string) => console.error(`reconcile: ${text}`);

export async function reconcile(): Promise<Figure[]> {
  const events = Number(process.env.BENCH_RECONCILE_EVENTS ?? 200);
  const stateDir = await mkdtemp(path.join(STATE_ROOT, "walle-bench-reconcile-"));
  const bins = await resolveResticBinaries((l) => say(l));
  say("starting a local cluster");
  const cluster = await startCluster({ stateDir, log: (msg) => (/^(Building|Built|Downloading|Local cluster is ready)/.test(msg) ? say(msg) : undefined) });
  const rest = await startRestServer({ binary: bins.restServer, dataDir: path.join(stateDir, "rest-server") });
  try {
    await install(cluster, rest.repositoryUrl("bench"));
    const requests = await requestsOverOneLife(cluster);
    const latency = await eventToWrite(cluster, events);
    // The figures are the image's bundle's; the source entry is context (see the top of this file).
    // The image's bundle as the image runs it (scripts/images.ts): its Node flags, and a compile cache filled by this
    // Node before the first start, as the image's is when it is built.
    const bundle = path.join(await mkdtemp(path.join(cluster.stateDir, "reconcile-app-")), "reconcile.mjs");
    await bundleFunction("reconcile", bundle);
    const image = {
      argv: [...nodeFlags.reconcile, bundle],
      env: { NODE_COMPILE_CACHE: await fillCompileCache(process.execPath, bundle, nodeFlags.reconcile) },
    };
    const child = await childRuns(cluster, image, "the image's bundle");
    await childRuns(cluster, { argv: [reconcileMain], env: {} }, "functions/reconcile/main.ts");
    return [
      figure("reconcile.event_to_write_p50_ms", round(percentile(latency, 0.5)), "ms", 20),
      figure("reconcile.event_to_write_p99_ms", round(percentile(latency, 0.99)), "ms", 100),
      figure("reconcile.api_requests_per_backupjob", requests, "requests", 25),
      figure("reconcile.start_to_first_event_ms", round(percentile(child.starts, 0.5)), "ms", 400),
      figure("reconcile.rss_after_start_mb", round(child.rssStartMb), "MB", 100),
      figure("reconcile.rss_after_1000_events_mb", round(child.rssMb), "MB", 100),
    ];
  } finally {
    await rest.stop();
    await cluster.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
}

// ---- The cluster

/**
 * Walle's install manifests as the tests apply them (its namespace, every function's service account and RBAC, the
 * ApiServerSource's among them, and the admission bounds), and a namespace with a PVC and a repository.
 */
async function install(cluster: Cluster, repository: string): Promise<void> {
  await installWalle(cluster.api);
  await cluster.api.create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } });
  await cluster.api.create(`/api/v1/namespaces/${NS}/secrets`, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "repo" },
    stringData: { RESTIC_REPOSITORY: repository, RESTIC_PASSWORD: "bench-password", INITIALIZE_REPO: "true" },
  });
  await cluster.api.create(`/api/v1/namespaces/${NS}/persistentvolumeclaims`, {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name: "data" },
    spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
  });
  const dir = await until(() => boundVolumeDir(cluster.api, cluster.stateDir, NS, "data"), "the PVC to be bound");
  await mkdir(path.join(dir, "docs"), { recursive: true });
  for (let i = 0; i < 20; i++) await writeFile(path.join(dir, "docs", `file-${i}.txt`), `file ${i}\n`.repeat(100), { mode: 0o644 });
  await chmod(path.join(dir, "docs"), 0o755);
}

async function createBackupJob(api: RestClient, name: string): Promise<KubeObject> {
  return api.create<KubeObject>(`/apis/ros.io/v1/namespaces/${NS}/backupjobs`, {
    apiVersion: "ros.io/v1",
    kind: "BackupJob",
    metadata: { name },
    spec: { sourcePvc: "data", repository: { name: "repo", namespace: NS } },
  });
}

interface BackupJobStatus {
  status?: { phase?: string; conditions?: { type: string; status: string; message?: string }[] };
}

/** The function's logs are produced, as in production, and thrown away: stdout holds figures only. */
const quietLog = () => createLogger({ function: "walle-reconcile", level: "info", destination: { write: () => {} } });

// ---- API requests over one BackupJob's life

async function requestsOverOneLife(cluster: Cluster): Promise<number> {
  const walle = await runWalle({ admin: cluster.api, stateDir: cluster.stateDir, log: quietLog() });
  // BENCH_TRACE_REQUESTS=1 lists each request on stderr, to see where they go.
  if (process.env.BENCH_TRACE_REQUESTS === "1") {
    const request = walle.api.request.bind(walle.api);
    walle.api.request = <T = unknown>(...args: Parameters<RestClient["request"]>): Promise<T> => {
      say(`request ${args[0]} ${args[1]}`);
      return request<T>(...args);
    };
  }
  try {
    const before = walle.requests();
    await createBackupJob(cluster.api, "life");
    const bj = await until(
      async () => {
        const got = await cluster.api.get<BackupJobStatus>(`/apis/ros.io/v1/namespaces/${NS}/backupjobs/life`);
        const cleaned = got.status?.conditions?.some((c) => c.type === "CleanedUp" && c.status === "True");
        return (got.status?.phase === "Finished" || got.status?.phase === "Failed") && cleaned ? got : undefined;
      },
      "the BackupJob to finish and clean up",
      180_000,
    );
    if (bj.status?.phase !== "Finished") throw new Error(`the BackupJob ${bj.status?.phase}: ${JSON.stringify(bj.status?.conditions)}`);
    // The clean-up's deletions come back as events: wait until they stop.
    let last = walle.requests();
    for (let quiet = 0; quiet < 20; quiet++) {
      await sleep(100);
      if (walle.requests() !== last) {
        last = walle.requests();
        quiet = 0;
      }
    }
    const count = walle.requests() - before;
    say(`one BackupJob's life took ${count} API requests of the function`);
    return count;
  } finally {
    await walle.stop();
  }
}

// ---- Event to next API write

/** Stamps the first write request the client sends after `arm()`. */
function stampWrites(api: RestClient): { arm(): void; readonly firstWriteAt: number | undefined } {
  const state = { armed: false, firstWriteAt: undefined as number | undefined };
  const request = api.request.bind(api);
  api.request = <T = unknown>(...args: Parameters<RestClient["request"]>): Promise<T> => {
    if (state.armed && args[0] !== "GET") {
      state.firstWriteAt = performance.now();
      state.armed = false;
    }
    return request<T>(...args);
  };
  return {
    arm() {
      state.firstWriteAt = undefined;
      state.armed = true;
    },
    get firstWriteAt() {
      return state.firstWriteAt;
    },
  };
}

async function eventToWrite(cluster: Cluster, events: number): Promise<number[]> {
  const walle = await runWalle({ admin: cluster.api, stateDir: cluster.stateDir, log: quietLog(), eventSource: false });
  const writes = stampWrites(walle.api);
  const context = { mode: EventMode.Resource, source: cluster.server };
  const samples: number[] = [];
  try {
    for (let i = 0; i < events + WARM_UP; i++) {
      const bj = await createBackupJob(cluster.api, `latency-${i}`);
      const event = buildEvent("add", { ...bj, apiVersion: "ros.io/v1", kind: "BackupJob" }, context);
      writes.arm();
      const started = performance.now();
      const status = await send(walle.url, event);
      const wrote = writes.firstWriteAt;
      if (status !== 200 || wrote === undefined)
        throw new Error(`the add event of BackupJob latency-${i} got ${status}${wrote === undefined ? " and made no write" : ""}`);
      if (i >= WARM_UP) samples.push(wrote - started);
    }
  } finally {
    await walle.stop();
  }
  say(
    `event to first write over ${samples.length} events: p50 ${percentile(samples, 0.5).toFixed(1)} ms, p99 ${percentile(samples, 0.99).toFixed(1)} ms, max ${Math.max(...samples).toFixed(1)} ms`,
  );
  return samples;
}

async function send(url: string, event: OutgoingEvent): Promise<number> {
  const res = await fetch(url, { method: "POST", headers: event.headers, body: event.body });
  await res.arrayBuffer();
  return res.status;
}

// ---- Process start to first handled event, and RSS after 1,000 events

interface ChildRuns {
  /** Spawn to the first 2xx, one per run. */
  starts: number[];
  /** Spawn to the function's "Started" log line, one per run: for context, it splits start-up from the first event. */
  listening: number[];
  /** The last run's RSS when it logged that it started, after its first event, and after 1,000 more. */
  rssStartMb: number;
  rssFirstMb: number;
  rssMb: number;
}

/**
 * A pod's service-account mount, as the kubelet makes it: the token, the cluster's CA and the namespace in one
 * directory, which `inPod` mounts at /var/run/secrets/kubernetes.io/serviceaccount.
 */
async function serviceAccountMount(cluster: Cluster): Promise<string> {
  const dir = path.join(cluster.stateDir, "bench-serviceaccount");
  await mkdir(dir, { recursive: true });
  const { token } = await serviceAccountToken(cluster.api, INSTALL_NAMESPACE, ServiceAccount.Reconcile);
  await writeFile(path.join(dir, "token"), token, { mode: 0o600 });
  await writeFile(path.join(dir, "ca.crt"), await readFile(path.join(cluster.stateDir, "pki", "ca.crt")));
  await writeFile(path.join(dir, "namespace"), INSTALL_NAMESPACE);
  return dir;
}

/**
 * `node <entry>` as it runs in its pod: credentials from the service-account mount (in a mount namespace of its
 * own, so the host's /var/run/secrets is left as it is) and KUBERNETES_SERVICE_HOST/PORT, no KUBECONFIG, so the
 * in-cluster path is what is measured.
 */
function inPod(cluster: Cluster, mount: string, argv: readonly string[], env: Record<string, string>): ChildProcess {
  const server = new URL(cluster.server);
  const target = "/var/run/secrets/kubernetes.io/serviceaccount";
  const script = `mkdir -p ${target} && mount --bind "$1" ${target} && shift && exec "$@"`;
  return spawn("unshare", ["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", mount, process.execPath, ...argv], {
    env: { PATH: process.env.PATH ?? "", KUBERNETES_SERVICE_HOST: server.hostname, KUBERNETES_SERVICE_PORT: server.port, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Five starts of `node <entry>` as its own process; the last one then gets 1,000 events. */
async function childRuns(cluster: Cluster, command: { argv: readonly string[]; env: Record<string, string> }, label: string): Promise<ChildRuns> {
  const entry = command.argv.at(-1) ?? "";
  const mount = await serviceAccountMount(cluster);
  const bj = await cluster.api.get<KubeObject>(`/apis/ros.io/v1/namespaces/${NS}/backupjobs/life`);
  const context = { mode: EventMode.Resource, source: cluster.server };
  const update = () => buildEvent("update", { ...bj, apiVersion: "ros.io/v1", kind: "BackupJob" }, context);
  const runs: ChildRuns = { starts: [], listening: [], rssStartMb: 0, rssFirstMb: 0, rssMb: 0 };
  for (let run = 0; run < 5; run++) {
    const port = await freePort();
    const started = performance.now();
    const child = inPod(cluster, mount, command.argv, {
      ...command.env,
      WALLE_WORKER_IMAGE: LOCAL_WORKER_IMAGE,
      WALLE_CLUSTER_NAME: LOCAL_CLUSTER_NAME,
      PORT: String(port),
    });
    const rssAtStart = new Promise<number>((resolve) => {
      child.stdout?.on("data", (c: Buffer) => {
        if (runs.listening.length === run && c.toString().includes("Started reconcile function")) {
          runs.listening.push(performance.now() - started);
          // The process that logged it is node, exec'd in place of the shell: the same pid.
          resolve(vmRssMb(child.pid ?? 0).catch(() => 0));
        }
      });
    });
    let stderr = "";
    child.stderr?.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
    try {
      const url = `http://127.0.0.1:${port}/`;
      for (;;) {
        if (child.exitCode !== null) throw new Error(`node ${entry} exited with ${child.exitCode}: ${stderr}`);
        const status = await send(url, update()).catch(() => 0);
        if (status >= 200 && status < 300) break;
        if (status !== 0) throw new Error(`node ${entry} answered its first event with ${status}`);
        await sleep(2);
      }
      runs.starts.push(performance.now() - started);
      if (run === 4) {
        runs.rssStartMb = await rssAtStart;
        runs.rssFirstMb = await vmRssMb(child.pid ?? 0);
        for (let i = 0; i < 1000; i++) {
          const status = await send(url, update());
          if (status < 200 || status >= 300) throw new Error(`event ${i} to node ${entry} got ${status}`);
        }
        runs.rssMb = await vmRssMb(child.pid ?? 0);
      }
    } finally {
      await terminate(child);
    }
  }
  const ms = (values: number[]) => values.map((v) => v.toFixed(0)).join(", ");
  say(
    `${label}: start to first handled event ${ms(runs.starts)} ms (listening after ${ms(runs.listening)} ms); RSS at start ${runs.rssStartMb.toFixed(1)} MB, after the first event ${runs.rssFirstMb.toFixed(1)} MB, after 1000 more ${runs.rssMb.toFixed(1)} MB`,
  );
  return runs;
}

async function vmRssMb(pid: number): Promise<number> {
  return ((await vmRssKiB(pid)) * 1024) / 1e6;
}

async function vmRssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kib = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1];
  if (!kib) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kib);
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  await exited;
}

// ---- Small things

async function until<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** The nearest-rank percentile. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? Number.NaN;
}

const round = (value: number): number => Math.round(value * 10) / 10;

interface OutgoingEvent {
  readonly id: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * One change in the HTTP binary mode Knative's adapter sends it (pkg/adapter/apiserver/events.go), written here so
 * the bench times the function alone, from the moment an event is sent, without the adapter's own latency.
 */
function buildEvent(change: ChangeType, obj: KubeObject, ctx: { mode: EventMode; source: string }): OutgoingEvent {
  const apiVersion = obj.apiVersion ?? "";
  const kind = obj.kind ?? "";
  const { name } = obj.metadata;
  const namespace = obj.metadata.namespace ?? "";
  const id = randomUUID();
  return {
    id,
    headers: {
      "content-type": "application/json",
      "ce-specversion": "1.0",
      "ce-id": id,
      "ce-source": ctx.source,
      "ce-type": `dev.knative.apiserver.${ctx.mode === EventMode.Reference ? "ref" : "resource"}.${change}`,
      "ce-subject": `/apis/${apiVersion}/namespaces/${namespace}/${guessPlural(kind)}/${name}`,
      "ce-time": new Date().toISOString(),
      "ce-kind": kind,
      "ce-apiversion": apiVersion,
      "ce-name": name,
      "ce-namespace": namespace,
    },
    body: JSON.stringify(obj),
  };
}

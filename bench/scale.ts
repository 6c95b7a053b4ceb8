// Bench group `scale`: one schedule over 200 PVCs in 20 namespaces on a local cluster of its own (docs/architecture.md, Targets),
// everything real that runs here: the control plane, the CSI snapshot controllers and the local driver, the real
// node running every worker as a pod, the reconcile function in-process as its own service account fed by Knative's
// ApiServerSource adapter, a real rest-server, and the tick as its command runs in its Job (functions/tick/main.ts,
// as service account walle-tick), started by this bench every BENCH_SCALE_TICK_SECONDS (default 60) as KEDA's
// window would start it, so each run's report (with its API requests) can be read.
//
// BENCH_SCALE_NAMESPACES (default 20) namespaces each hold BENCH_SCALE_PVCS (default 10) bound PVCs with a small tree
// (20 files of 4 KiB). One BackupSchedule selects them all (a persistentVolumeClaim plan with a namespace selector)
// into one shared repository in walle-system, so every worker runs there, each snapshot moved across as docs/architecture.md, Security
// describes, at most WALLE_MAX_WORKERS_PER_REPOSITORY (default 4) at once.
//
// - scale.wall_time_s: from the first tick's start (the schedule is due from its creation) to the moment the
//   BackupSet reads Finished, polled every 250 ms.
// - scale.api_requests_per_pvc: the reconcile function's requests (its RestClient's count) plus every tick's
//   (`apiRequests` in its report) until then, over the PVCs.
// - scale.peak_workers_per_repository: the most worker containers running at once in the repository, from a watch
//   on the worker pods' container states (startedAt, finishedAt; the kubelet gives them to the second).
// - scale.longest_worker_chain_s: the longest chain of worker runs, each starting after the one before it ended.
// - scale.orchestration_overhead_pct: wall time minus that chain, as a share of the wall time: the time the set
//   spent on anything but the worker runs it had to wait for (snapshots, moves, Jobs, pods, events, status).
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { boundVolumeDir } from "../cluster/csi.ts";
import { startCluster, STATE_ROOT, type Cluster } from "../cluster/index.ts";
import { startRestServer } from "../cluster/rest-server.ts";
import { installWalle, runTickCommand, runWalle } from "../cluster/run-walle.ts";
import { resolveResticBinaries } from "../cluster/toolchain.ts";
import { INSTALL_NAMESPACE, Label } from "../lib/api/constants.ts";
import { Informer, type KubeObject } from "../lib/k8s/informer.ts";
import { createLogger } from "../lib/log.ts";
import { figure, type Figure } from "./figures.ts";

const say = (text: string) => console.error(`scale: ${text}`);
const LABEL = "walle.bench/scale";

export async function scale(): Promise<Figure[]> {
  const namespaces = Number(process.env.BENCH_SCALE_NAMESPACES ?? 20);
  const perNamespace = Number(process.env.BENCH_SCALE_PVCS ?? 10);
  const tickEvery = Number(process.env.BENCH_SCALE_TICK_SECONDS ?? 60) * 1000;
  const pvcs = namespaces * perNamespace;
  const stateDir = await mkdtemp(path.join(STATE_ROOT, "walle-bench-scale-"));
  const bins = await resolveResticBinaries((l) => say(l));
  say("starting a local cluster");
  const cluster = await startCluster({ stateDir, log: (msg) => (/^(Building|Built|Downloading|Local cluster is ready)/.test(msg) ? say(msg) : undefined) });
  const rest = await startRestServer({ binary: bins.restServer, dataDir: path.join(stateDir, "rest-server"), host: cluster.node.network.hostIp });
  try {
    await installWalle(cluster.api);
    await cluster.api.create(`/api/v1/namespaces/${INSTALL_NAMESPACE}/secrets`, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "restic-repo" },
      stringData: { RESTIC_REPOSITORY: rest.repositoryUrl("scale"), RESTIC_PASSWORD: "bench-password", INITIALIZE_REPO: "true" },
    });
    say(`making ${pvcs} PVCs in ${namespaces} namespaces`);
    await volumes(cluster, namespaces, perNamespace);
    const walle = await runWalle({
      admin: cluster.api,
      stateDir,
      log: createLogger({ function: "walle-reconcile", level: "info", destination: { write: () => {} } }),
    });
    const workers = await watchWorkers(cluster);
    const runs = workers.runs;
    await cluster.api.create("/apis/ros.io/v1/backupschedules", {
      apiVersion: "ros.io/v1",
      kind: "BackupSchedule",
      metadata: { name: "scale" },
      spec: {
        interval: "24h",
        repository: { name: "restic-repo" },
        plans: [{ type: "persistentVolumeClaim", namespaceSelector: { matchLabels: { [LABEL]: "true" } } }],
      },
    });
    const before = walle.requests();
    const due = Date.now();
    const ticks = ticker(cluster, tickEvery);
    type Set = { status?: { state?: string; completions?: string } };
    let set: Set | undefined;
    for (let last = ""; ; await sleep(250)) {
      const sets = await cluster.api.get<{ items: Set[] }>("/apis/ros.io/v1/backupsets", { labelSelector: `${Label.BackupSchedule}=scale` });
      set = sets.items[0];
      const now = `${set?.status?.state ?? "no BackupSet yet"} ${set?.status?.completions ?? ""}`;
      if (now !== last) say(`${((Date.now() - due) / 1000).toFixed(0)} s: ${(last = now)}`);
      if (set?.status?.state === "Finished" || set?.status?.state === "FinishedWithFailures") break;
    }
    const wall = (Date.now() - due) / 1000;
    workers.stop();
    const requests = walle.requests() - before + (await ticks.stop());
    await walle.stop();
    if (set.status?.state !== "Finished") throw new Error(`the BackupSet ended ${set.status?.state} ${set.status?.completions}`);
    const done = [...runs.values()].filter((r): r is Run => r.end !== undefined);
    say(`${runs.size} worker pods seen, ${[...runs.values()].filter((r) => r.start !== undefined).length} started, ${done.length} ended`);
    if (done.length < pvcs) throw new Error(`saw ${done.length} finished workers for ${pvcs} PVCs`);
    const chain = longestChain(done);
    say(`${done.length} workers, each ${(done.reduce((s, r) => s + r.end - r.start, 0) / done.length / 1000).toFixed(1)} s on average`);
    return [
      figure("scale.wall_time_s", round(wall), "s", null),
      figure("scale.api_requests_per_pvc", round(requests / pvcs), "requests", null),
      figure("scale.peak_workers_per_repository", peak(done), "workers", 4),
      figure("scale.longest_worker_chain_s", round(chain / 1000), "s", null),
      figure("scale.orchestration_overhead_pct", round((100 * (wall - chain / 1000)) / wall), "%", 10),
    ];
  } finally {
    await rest.stop();
    await cluster.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
}

const round = (v: number) => Math.round(v * 10) / 10;

/** Namespaces labelled for the schedule, each with bound PVCs holding a small tree. */
async function volumes(cluster: Cluster, namespaces: number, perNamespace: number): Promise<void> {
  const names: [string, string][] = [];
  for (let n = 0; n < namespaces; n++) {
    const ns = `scale-${String(n).padStart(2, "0")}`;
    await cluster.api.create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns, labels: { [LABEL]: "true" } } });
    for (let p = 0; p < perNamespace; p++) {
      await cluster.api.create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        metadata: { name: `data-${p}` },
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
      });
      names.push([ns, `data-${p}`]);
    }
  }
  for (const [ns, pvc] of names) {
    let dir: string | undefined;
    for (let i = 0; !(dir = await boundVolumeDir(cluster.api, cluster.stateDir, ns, pvc)); i++) {
      if (i > 1200) throw new Error(`PVC ${ns}/${pvc} was not bound within 10 minutes`);
      await sleep(500);
    }
    await mkdir(path.join(dir, "app"), { recursive: true });
    for (let i = 0; i < 20; i++) await writeFile(path.join(dir, "app", `file-${i}`), `${ns}/${pvc} ${i}\n`.padEnd(4096, "."), { mode: 0o640 });
    await chmod(path.join(dir, "app"), 0o750);
  }
}

export interface Run {
  start: number;
  end: number;
}

type Pod = KubeObject & {
  metadata: { uid: string };
  status?: { containerStatuses?: { state?: { running?: { startedAt: string }; terminated?: { startedAt: string; finishedAt: string } } }[] };
};

/** Every backup worker's container run, from an informer on their pods (they go with their Jobs when cleaned up). */
async function watchWorkers(cluster: Cluster): Promise<{ runs: Map<string, Partial<Run>>; stop(): void }> {
  const runs = new Map<string, Partial<Run>>();
  const informer = new Informer<Pod>(
    cluster.api,
    "/api/v1/pods",
    (_type, pod) => {
      const state = pod.status?.containerStatuses?.[0]?.state;
      const r = runs.get(pod.metadata.uid) ?? {};
      runs.set(pod.metadata.uid, r);
      const started = state?.terminated?.startedAt ?? state?.running?.startedAt;
      if (started) r.start = Date.parse(started);
      if (state?.terminated) r.end = Date.parse(state.terminated.finishedAt);
    },
    { labelSelector: `${Label.BackupJobType}=backup` },
    (err) => say(`the informer on worker pods: ${String(err)}`),
  );
  await informer.start();
  return { runs, stop: () => informer.stop() };
}

/** The tick's command as its Job runs it, every `everyMs`; stop() ends it and gives the API requests of every run. */
function ticker(cluster: Cluster, everyMs: number): { stop(): Promise<number> } {
  let stopped = false;
  let requests = 0;
  const loop = (async () => {
    while (!stopped) {
      const started = Date.now();
      const { report } = await runTickCommand({ admin: cluster.api, stateDir: cluster.stateDir });
      requests += report?.apiRequests ?? 0;
      say(`a tick: ${report?.actions.length ?? 0} actions, ${report?.apiRequests ?? "?"} API requests`);
      while (!stopped && Date.now() - started < everyMs) await sleep(250);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return requests;
    },
  };
}

/** The most runs under way at one instant. */
export function peak(runs: readonly Run[]): number {
  const edges = runs.flatMap((r) => [[r.start, 1] as const, [r.end, -1] as const]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let most = 0;
  for (const [, d] of edges) most = Math.max(most, (now += d));
  return most;
}

/** The longest chain of runs, each starting no earlier than the one before it ended: the sum of their run times. */
export function longestChain(runs: readonly Run[]): number {
  const sorted = [...runs].sort((a, b) => a.end - b.end);
  const best: number[] = [];
  sorted.forEach((r, i) => {
    let before = 0;
    for (let j = 0; j < i; j++) if ((sorted[j]?.end ?? Infinity) <= r.start) before = Math.max(before, best[j] ?? 0);
    best[i] = before + (r.end - r.start);
  });
  return Math.max(0, ...best);
}

// Bench group `tick` (docs/architecture.md, Targets).
//
// - tick.evaluate_10k_schedules_ms / tick.evaluate_10k_schedules_rss_mb: the pure evaluation (lib/core/tick.ts
//   planTick: parse every schedule, index the inventory, select each due schedule's PVCs, decide) of 10,000
//   schedules over 1,000 namespaces holding 100,000 bound PVCs and 50,000 pods (each pod mounts two PVCs), every
//   schedule due at once (the worst case: 10,000 BackupSets and 100,000 BackupJobs decided). Ten schedules per
//   namespace each cover a tenth of its PVCs: most by the original's `pod` plan (a label and `metadata.namespace
//   equals`), some by a `persistentVolumeClaim` plan with a namespaceSelector. It runs in
//   a child process of its own: the time is planTick's wall time, the RSS the child's VmRSS after it, with the
//   inventory in memory as the tick would hold it after its reads, run with the tick image's Node flags.
// - tick.evaluate_10k_schedules_typical_ms: the same, on a typical tick: each schedule last ran at a different
//   5-minute step of its 6 h interval, so about 1 in 72 is due (139 of 10,000).
// - tick.api_reads / tick.api_writes_over_due: one tick on a local cluster of its own with 200 schedules over
//   2,000 bound PVCs in 20 namespaces (each schedule's PVC plan selects 10), all due. The tick runs in-process as
//   its own service account (walle-tick) with `resync: false` (in-flight work is the resync's, measured by the
//   reconcile group), and its RestClient counts GETs (reads) and other requests (writes). Reads must stay at the
//   number of kinds a tick reads (6: schedules, BackupSets, Jobs, PVCs, pods, namespaces), whatever the number of
//   schedules; writes are divided by what the due schedules must write (per schedule its BackupSet, its status and
//   one Event; per PVC its BackupJob), so 1.0 means nothing beyond that.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { applyObjects, readManifestFiles, serviceAccountKubeconfig, startCluster, STATE_ROOT } from "../cluster/index.ts";
import { credentialsFromKubeconfig } from "../cluster/kubeconfig.ts";
import { LOCAL_CLUSTER_NAME, LOCAL_WORKER_IMAGE } from "../cluster/run-walle.ts";
import { repoRoot } from "../cluster/toolchain.ts";
import { loadConfig } from "../lib/app/config.ts";
import { createWalle } from "../lib/app/walle.ts";
import { INSTALL_NAMESPACE, ServiceAccount } from "../lib/api/constants.ts";
import { planTick } from "../lib/core/tick.ts";
import { nodeFlags } from "../scripts/bundle.ts";
import { RestClient } from "../lib/k8s/rest.ts";
import { createLogger } from "../lib/log.ts";
import { testConfig } from "../test/support/config.ts";
import { figure, type Figure } from "./figures.ts";

const run = promisify(execFile);
const say = (text: string) => console.error(`tick: ${text}`);
const round = (n: number) => Math.round(n * 10) / 10;

export async function tick(): Promise<Figure[]> {
  say("evaluating 10,000 schedules over 100,000 PVCs and 50,000 pods in a child process, as the tick image runs");
  const child = async (mode: string) => {
    const { stdout } = await run(process.execPath, [...nodeFlags.tick, fileURLToPath(import.meta.url), "--pure-child", mode], { maxBuffer: 1 << 20 });
    const out = JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as { ms: number; rssMb: number; due: number; jobs: number };
    say(`${mode}: ${out.due} schedules due, ${out.jobs} BackupJobs decided in ${Math.round(out.ms)} ms, ${Math.round(out.rssMb)} MB`);
    return out;
  };
  const pure = await child("all-due");
  const typical = await child("typical");
  const api = await oneTickOnACluster();
  return [
    figure("tick.evaluate_10k_schedules_ms", round(pure.ms), "ms", 1000),
    figure("tick.evaluate_10k_schedules_rss_mb", round(pure.rssMb), "MB", 300),
    figure("tick.evaluate_10k_schedules_typical_ms", round(typical.ms), "ms", 1000),
    figure("tick.api_reads", api.reads, "requests", 6),
    figure("tick.api_writes_over_due", Math.round((api.writes / api.bound) * 1000) / 1000, "ratio", 1),
  ];
}

// ---- The pure evaluation, in a child process

function inventory(typical: boolean) {
  const namespaces = Array.from({ length: 1000 }, (_, n) => ({
    metadata: { name: `ns-${n}`, labels: { "kubernetes.io/metadata.name": `ns-${n}`, team: `team-${n % 20}` } },
  }));
  const pvcs = namespaces.flatMap((ns) =>
    Array.from({ length: 100 }, (_, i) => ({
      metadata: { namespace: ns.metadata.name, name: `data-${i}`, labels: { group: `g-${Math.floor(i / 10)}` } },
      spec: { storageClassName: "fast" },
      status: { phase: "Bound" },
    })),
  );
  const pods = namespaces.flatMap((ns) =>
    Array.from({ length: 50 }, (_, i) => ({
      metadata: { namespace: ns.metadata.name, name: `app-${i}`, labels: { app: `app-${Math.floor(i / 5)}` } },
      spec: {
        containers: [],
        nodeName: "node-1",
        volumes: [
          { name: "a", persistentVolumeClaim: { claimName: `data-${2 * i}` } },
          { name: "b", persistentVolumeClaim: { claimName: `data-${2 * i + 1}` } },
        ],
      },
      status: { phase: "Running" },
    })),
  );
  const created = new Date(Date.now() - 3600_000).toISOString();
  // Ten schedules per namespace, each over a tenth of its PVCs: every PVC is some schedule's, once.
  const schedules = Array.from({ length: 10_000 }, (_, s) => {
    const ns = `ns-${Math.floor(s / 10)}`;
    const k = s % 10;
    const plan =
      k % 4 === 3
        ? {
            type: "persistentVolumeClaim",
            namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": ns } },
            labelSelector: { matchLabels: { group: `g-${k}` } },
          }
        : { type: "pod", labelSelector: { matchLabels: { app: `app-${k}` } }, fieldSelector: [{ field: "metadata.namespace", operator: "equals", value: ns }] };
    // Typical: each schedule last ran a different 5 minutes ago within its 6 h, so about 1 in 72 is due per tick.
    const last = new Date(Date.now() - 6 * 3600_000 + (s % 72) * 5 * 60_000 - 60_000).toISOString().replace(/\.\d+Z$/, "Z");
    const status = typical ? { status: { scheduler: { backupTimestamp: last } } } : {};
    return {
      apiVersion: "ros.io/v1",
      kind: "BackupSchedule",
      metadata: { name: `schedule-${s}`, uid: `uid-${s}`, creationTimestamp: created, generation: 1 },
      spec: { interval: "6h", plans: [plan], repository: { name: "repo", namespace: ns } },
      ...status,
    };
  });
  return { namespaces, pvcs, pods, schedules };
}

async function pureChild(typical: boolean): Promise<void> {
  const inv = inventory(typical);
  const started = performance.now();
  const plans = planTick(
    { schedules: inv.schedules, sets: [], jobs: [], pvcs: inv.pvcs as never, pods: inv.pods as never, namespaces: inv.namespaces },
    testConfig,
    new Date(),
  );
  const ms = performance.now() - started;
  const status = await readFile("/proc/self/status", "utf8");
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const jobs = plans.reduce((n, p) => n + p.decision.actions.filter((a) => a.op === "create" && a.manifest.kind === "BackupJob").length, 0);
  process.stdout.write(`${JSON.stringify({ ms, rssMb: (rssKb * 1024) / 1e6, due: plans.filter((p) => p.decision.actions.length > 0).length, jobs })}\n`);
}

// ---- One tick on a local cluster

async function oneTickOnACluster(): Promise<{ reads: number; writes: number; bound: number }> {
  const stateDir = await mkdtemp(path.join(STATE_ROOT, "walle-bench-tick-"));
  say("starting a local cluster");
  const cluster = await startCluster({ stateDir, log: (msg) => (/^(Building|Built|Downloading|Local cluster is ready)/.test(msg) ? say(msg) : undefined) });
  try {
    await applyObjects(cluster.api, [{ apiVersion: "v1", kind: "Namespace", metadata: { name: INSTALL_NAMESPACE } }]);
    await applyObjects(cluster.api, await readManifestFiles([path.join(repoRoot, "knative", "tick-rbac.yaml")]));
    const namespaces = Array.from({ length: 20 }, (_, n) => `bench-${n}`);
    say("creating 2,000 PVCs in 20 namespaces and 200 schedules");
    for (const ns of namespaces) {
      await cluster.api.create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
      await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          cluster.api.create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
            apiVersion: "v1",
            kind: "PersistentVolumeClaim",
            metadata: { name: `data-${i}`, labels: { group: `g-${Math.floor(i / 10)}` } },
            spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
          }),
        ),
      );
    }
    for (let s = 0; s < 200; s++) {
      const ns = namespaces[s % 20] ?? "";
      await cluster.api.create("/apis/ros.io/v1/backupschedules", {
        apiVersion: "ros.io/v1",
        kind: "BackupSchedule",
        metadata: { name: `bench-${s}` },
        spec: {
          interval: "6h",
          plans: [
            {
              type: "persistentVolumeClaim",
              labelSelector: { matchLabels: { group: `g-${Math.floor(s / 20)}` } },
              fieldSelector: [{ field: "metadata.namespace", operator: "equals", value: ns }],
            },
          ],
          repository: { name: "repo", namespace: ns },
        },
      });
    }
    say("waiting for the 2,000 PVCs to be bound");
    for (;;) {
      const list = await cluster.api.get<{ items: { status?: { phase?: string } }[] }>("/api/v1/persistentvolumeclaims");
      if (list.items.filter((p) => p.status?.phase === "Bound").length >= 2000) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    const kubeconfig = await serviceAccountKubeconfig(cluster.api, stateDir, INSTALL_NAMESPACE, ServiceAccount.Tick, 3600);
    const counted = countingClient(new RestClient(credentialsFromKubeconfig(kubeconfig)));
    const { walle: config } = await loadConfig({ WALLE_WORKER_IMAGE: LOCAL_WORKER_IMAGE, WALLE_CLUSTER_NAME: LOCAL_CLUSTER_NAME }, "walle-tick");
    const walle = createWalle({ api: counted.client, config, controller: "ros.io/walle-tick" });
    const report = await walle.tick({ resync: false }, createLogger({ function: "walle-tick", level: "silent" }));
    counted.client.close();
    if (report.errors.length > 0) throw new Error(`the tick failed: ${report.errors.join("; ")}`);
    const sets = report.actions.filter((a) => a.startsWith("create BackupSet ")).length;
    const jobs = report.actions.filter((a) => a.startsWith("create BackupJob ")).length;
    say(`one tick: ${counted.reads} reads, ${counted.writes} writes; ${sets} BackupSets and ${jobs} BackupJobs made`);
    return { reads: counted.reads, writes: counted.writes, bound: 3 * sets + jobs };
  } finally {
    await cluster.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
}

/** A client whose GETs and other requests are counted apart. */
function countingClient(client: RestClient) {
  const counts = { reads: 0, writes: 0 };
  const get = client.get.bind(client);
  const write = <K extends "create" | "patch" | "delete" | "replace">(k: K) => {
    const f = (client[k] as (...a: unknown[]) => Promise<unknown>).bind(client);
    (client as unknown as Record<string, unknown>)[k] = (...a: unknown[]) => {
      counts.writes++;
      return f(...a);
    };
  };
  client.get = ((p: string, q?: Record<string, string>) => {
    counts.reads++;
    return get(p, q);
  }) as RestClient["get"];
  for (const k of ["create", "patch", "delete", "replace"] as const) write(k);
  return {
    client,
    get reads() {
      return counts.reads;
    },
    get writes() {
      return counts.writes;
    },
  };
}

if (process.argv[2] === "--pure-child") await pureChild(process.argv[3] === "typical");

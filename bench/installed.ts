// Bench group `installed`: Walle as the README installs it (`kubectl apply -k .`) on a local cluster of its own with
// Knative Serving and Eventing (cluster/knative-serving.ts, cluster/knative-eventing.ts), the reconcile function a
// revision of the shipped Knative Service, its events from the adapter Eventing's controller made of the shipped
// ApiServerSource:
//
// - installed.event_cold_start_ms: from a BackupJob created while the revision has no pod to its first status
//   write (the adapter's event, through the activator, the revision's start and its first step), median of 5, each
//   after the revision went back to zero. docs/architecture.md, Targets, asks this below 3 s.
// - installed.cold_start_ms: the same for a forced backup: from curl's request to Walle's 202, which comes once the
//   BackupJob is made and its first step's status written, median of 5.
// - installed.scale_to_zero_s: from the answer to a forced backup until the revision has no pod, median of five.
// - Over BENCH_IDLE_SECONDS (default 600) with nothing sent: installed.idle_reconcile_pods, the most reconcile pods
//   seen at once; installed.idle_pods, the most of Walle's pods at once (the adapter, the tick's); installed.idle_tick_runs,
//   the tick's Jobs KEDA started; installed.idle_cpu_millicores, the CPU all of Walle's pods used, from the kubelet's
//   own counters (its stats summary, read every 2 s: a pod's cumulative CPU, less what it had at the window's start).
//
// The forced backups are curl's, from inside the node's network namespace to the revision's Service address (as a
// pod would send them; kube-proxy routes them to the activator), with the revision's host name, so nothing of a
// pod's start is counted.
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { serviceAccountToken, startCluster, STATE_ROOT, type Cluster } from "../cluster/index.ts";
import { sleep, waitUntil } from "../cluster/processes.ts";
import { repoRoot } from "../cluster/toolchain.ts";
import { figure, type Figure } from "./figures.ts";

const run = promisify(execFile);
const say = (line: string) => console.error(`bench installed: ${line}`);
const NS = "walle-system";
const REVISION = "walle-reconcile-00001";
const ROUNDS = 5;

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

interface PodStats {
  podRef: { name: string; namespace: string };
  cpu?: { usageCoreNanoSeconds?: number };
}

/** The kubelet's cumulative CPU of each of Walle's pods (those of its namespace), by name. */
async function walleCpu(cluster: Cluster): Promise<Map<string, number>> {
  const summary = await cluster.api.get<{ pods?: PodStats[] }>(`/api/v1/nodes/${cluster.node.name}/proxy/stats/summary`);
  return new Map((summary.pods ?? []).filter((p) => p.podRef.namespace === NS).map((p) => [p.podRef.name, p.cpu?.usageCoreNanoSeconds ?? 0]));
}

/** Milliseconds from a BackupJob's create (the API server's answer) to the first status the reconcile function wrote. */
async function eventColdStart(cluster: Cluster, ns: string, i: number): Promise<number> {
  const name = `event-${i}`;
  const created = Date.now();
  await cluster.api.create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, {
    apiVersion: "ros.io/v1",
    kind: "BackupJob",
    metadata: { name },
    spec: { sourcePvc: `data-${i}`, repository: { name: "repo", namespace: ns } },
  });
  let at = NaN;
  await waitUntil(
    `BackupJob ${ns}/${name}'s first status`,
    async () => {
      const bj = await cluster.api.get<{ status?: { phase?: string } }>(`/apis/ros.io/v1/namespaces/${ns}/backupjobs/${name}`);
      if (bj.status?.phase) at = Date.now();
      return bj.status?.phase !== undefined;
    },
    60_000,
  );
  return at - created;
}

/** The names of the reconcile revision's pods. */
const revisionPodNames = async (cluster: Cluster) =>
  (
    await cluster.api.get<{ items: { metadata: { name: string } }[] }>(`/api/v1/namespaces/${NS}/pods`, {
      labelSelector: `serving.knative.dev/revision=${REVISION}`,
    })
  ).items.map((p) => p.metadata.name);
const revisionPods = async (cluster: Cluster) => (await revisionPodNames(cluster)).length;

/** A token of a new service account with Kubernetes' edit role (walle-edit joins it) in `ns`, for Walle's audience. */
async function editor(cluster: Cluster, ns: string): Promise<string> {
  await cluster.api.create(`/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "ci" } });
  await cluster.api.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: "ci" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "walle-edit" },
    subjects: [{ kind: "ServiceAccount", name: "ci", namespace: ns }],
  });
  return (await serviceAccountToken(cluster.api, ns, "ci", 7200, ["walle"])).token;
}

/** One forced backup from the node's namespace: curl's status code and its total time in ms. */
async function forcedBackup(cluster: Cluster, address: string, token: string, ns: string, i: number): Promise<{ code: string; ms: number }> {
  const { stdout } = await run("nsenter", [
    `--net=/run/netns/${cluster.node.network.netns}`,
    "--",
    "curl",
    "-s",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code} %{time_total}",
    `http://${address}/`,
    "-H",
    `Host: ${REVISION}.${NS}.svc.cluster.local`,
    "-H",
    `Authorization: Bearer ${token}`,
    "-H",
    "Content-Type: application/json",
    "-H",
    "ce-specversion: 1.0",
    "-H",
    `ce-id: bench-${i}`,
    "-H",
    "ce-source: /bench",
    "-H",
    "ce-type: io.ros.walle.backup.requested",
    "-d",
    JSON.stringify({ namespace: ns, pvc: `data-${i}`, repository: { name: "repo", namespace: ns } }),
  ]);
  const [code = "", seconds = "NaN"] = stdout.trim().split(" ");
  return { code, ms: Number(seconds) * 1000 };
}

export async function installed(): Promise<Figure[]> {
  const stateDir = await mkdtemp(path.join(STATE_ROOT, "walle-bench-installed-"));
  say("starting a local cluster with Knative Serving and Eventing");
  const cluster = await startCluster({
    stateDir,
    walleCrds: false,
    knativeServing: true,
    knativeEventing: true,
    log: (msg) => (/^(Building|Built|Downloading|Knative \w+ is ready|Local cluster is ready)/.test(msg) ? say(msg) : undefined),
  });
  try {
    say("kubectl apply -k .");
    await run("kubectl", ["--kubeconfig", cluster.kubeconfig, "apply", "-k", repoRoot], { maxBuffer: 16 * 1024 * 1024 });
    const ns = "bench";
    await cluster.api.create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    // PVCs that are never bound to data: each request makes a BackupJob and its first step, and nothing more runs.
    for (let i = 0; i < 2 * ROUNDS; i++) {
      await cluster.api.create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        metadata: { name: `data-${i}` },
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
      });
    }
    await cluster.api.create(`/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "repo" },
      stringData: { RESTIC_REPOSITORY: "rest:http://127.0.0.1:1/none", RESTIC_PASSWORD: "bench" },
    });
    const token = await editor(cluster, ns);
    await waitUntil(
      `revision ${REVISION} Ready`,
      async () => {
        const r = await cluster.api
          .get<{ status?: { conditions?: { type: string; status: string }[] } }>(`/apis/serving.knative.dev/v1/namespaces/${NS}/revisions/${REVISION}`)
          .catch(() => undefined);
        return r?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
      },
      300_000,
    );
    const service = await cluster.api.get<{ spec: { clusterIP: string } }>(`/api/v1/namespaces/${NS}/services/${REVISION}`);
    const fromEvent: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      await waitUntil("the revision at zero pods", async () => (await revisionPods(cluster)) === 0, 300_000);
      fromEvent.push(await eventColdStart(cluster, ns, i));
      say(`event round ${i + 1}: first status ${fromEvent.at(-1)} ms after the BackupJob was created at zero pods`);
    }
    const cold: number[] = [];
    const toZero: number[] = [];
    for (let i = ROUNDS; i < 2 * ROUNDS; i++) {
      await waitUntil("the revision at zero pods", async () => (await revisionPods(cluster)) === 0, 300_000);
      const answer = await forcedBackup(cluster, service.spec.clusterIP, token, ns, i);
      if (answer.code !== "202") throw new Error(`forced backup ${i}: HTTP ${answer.code}, not 202`);
      const answered = Date.now();
      cold.push(answer.ms);
      await waitUntil("the revision back at zero pods", async () => (await revisionPods(cluster)) === 0, 300_000);
      toZero.push((Date.now() - answered) / 1000);
      say(`forced round ${i + 1 - ROUNDS}: 202 in ${answer.ms.toFixed(0)} ms from zero pods; zero pods again ${toZero.at(-1)?.toFixed(1)} s later`);
    }
    // What the requests made goes, so the idle window is Walle's alone (no worker of theirs runs in it).
    await cluster.api.delete(`/api/v1/namespaces/${ns}`);
    await waitUntil(
      `namespace ${ns} gone`,
      async () =>
        (await cluster.api.get(`/api/v1/namespaces/${ns}`).then(
          () => true,
          () => false,
        )) === false,
      300_000,
    );
    // Their deletion is a burst of events too: the revision wakes for it, and the window starts once it is at zero again.
    await waitUntil("the revision at zero pods after the deletions", async () => (await revisionPods(cluster)) === 0, 300_000);
    const idleSeconds = Number(process.env.BENCH_IDLE_SECONDS ?? 600);
    say(`idle for ${idleSeconds} s, counting Walle's pods, the tick's Jobs and their CPU`);
    const jobsBefore = new Set(
      (await cluster.api.get<{ items: { metadata: { name: string } }[] }>(`/apis/batch/v1/namespaces/${NS}/jobs`)).items.map((j) => j.metadata.name),
    );
    const baseline = await walleCpu(cluster);
    const last = new Map<string, number>();
    let most = 0;
    let mostPods = 0;
    const ticks = new Set<string>();
    const started = Date.now();
    // What a reconcile pod that runs in the window handled, from its own log, to say what woke it.
    const woken = new Map<string, string>();
    for (const end = started + idleSeconds * 1000; Date.now() < end; await sleep(2000)) {
      const pods = await revisionPodNames(cluster);
      most = Math.max(most, pods.length);
      for (const pod of pods) {
        const text = await cluster.api.get<string>(`/api/v1/namespaces/${NS}/pods/${pod}/log`, { container: "reconcile" }).catch(() => "");
        if (text) woken.set(pod, text);
      }
      const cpu = await walleCpu(cluster);
      mostPods = Math.max(mostPods, cpu.size);
      for (const [pod, used] of cpu) last.set(pod, used);
      for (const j of (
        await cluster.api.get<{ items: { metadata: { name: string; labels?: Record<string, string> } }[] }>(`/apis/batch/v1/namespaces/${NS}/jobs`)
      ).items) {
        if (!jobsBefore.has(j.metadata.name) && j.metadata.name.startsWith("walle-tick")) ticks.add(j.metadata.name);
      }
    }
    const usedNs = [...last].reduce((sum, [pod, used]) => sum + Math.max(0, used - (baseline.get(pod) ?? 0)), 0);
    const millicores = (usedNs / 1e6 / (Date.now() - started)) * 1000;
    say(`Walle's pods in the window: ${[...last.keys()].join(", ")}`);
    for (const [pod, text] of woken) {
      const handled = text
        .split("\n")
        .map((l) => {
          try {
            return JSON.parse(l) as { msg?: string; ceType?: string; namespace?: string; name?: string; time?: string };
          } catch {
            return {};
          }
        })
        .filter((l) => l.ceType);
      say(
        `reconcile pod ${pod} in the idle window handled: ${handled.map((l) => `${l.time} ${l.ceType} ${l.namespace ?? ""}/${l.name ?? ""}`).join("; ") || "no event"}`,
      );
    }
    return [
      figure("installed.event_cold_start_ms", Math.round(median(fromEvent)), "ms", 3000),
      figure("installed.cold_start_ms", Math.round(median(cold)), "ms", 3000),
      figure("installed.scale_to_zero_s", Math.round(median(toZero) * 10) / 10, "s", null),
      figure("installed.idle_reconcile_pods", most, "pods", 0),
      figure("installed.idle_pods", mostPods, "pods", null),
      figure("installed.idle_tick_runs", ticks.size, "Jobs", null),
      figure("installed.idle_cpu_millicores", Math.round(millicores * 10) / 10, "millicores", null),
    ];
  } finally {
    await cluster.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
}

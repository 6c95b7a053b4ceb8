// Knative Serving on the local cluster (cluster/knative-serving.ts), and Walle on it as the README installs it, on a
// cluster of their own. Serving's controller, webhook, autoscaler and activator run as pods on the real node from the
// images built here, the local KIngress (cluster/kingress.ts) routes a Service's cluster.local address, and a
// revision scales to zero and back through the activator. Then Walle: `kubectl apply -k .`, the shipped manifests and
// nothing else, and every function a pod from its image. The reconcile function is the shipped Knative Service's
// revision, at zero pods until a request comes; the tick is KEDA's Job of the shipped ScaledJob. What this cluster
// does not have yet is said where it matters: no Knative Eventing controller, so the shipped ApiServerSource sends
// nothing, and resyncs (an admin's trigger, as the README gives it) move the BackupJob on.
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serviceAccountToken, startCluster, STATE_ROOT, type Cluster } from "../../cluster/index.ts";
import { SERVING_DEPLOYMENTS, SERVING_NAMESPACE, servingImage } from "../../cluster/knative-serving.ts";
import { startRestServer, type RestServer } from "../../cluster/rest-server.ts";
import { repoRoot, requiredVersion, resolveResticBinaries } from "../../cluster/toolchain.ts";
import { Informer } from "../../lib/k8s/informer.ts";
import { listSnapshots, restic } from "../integration/worker-harness.ts";
import { waitFor } from "../support/kube.ts";
import { runOnce } from "../support/pods.ts";

const run = promisify(execFile);
const NS = "walle-system";
const REVISION = "walle-reconcile-00001";
const PASSWORD = "installed-walle";

let cluster: Cluster | undefined;
let stateDir: string | undefined;
let rest: RestServer | undefined;
const api = () => cluster!.api;

interface Seen {
  metadata: { name: string; namespace?: string };
  status?: { phase?: string; snapshotId?: string; conditions?: { type: string; status: string; reason?: string }[] };
}
interface Conditioned {
  status?: { conditions?: { type: string; status: string; reason?: string }[] };
}
const condition = (o: Conditioned, type: string) => o.status?.conditions?.find((c) => c.type === type);
const revisionPods = () => api().get<{ items: Seen[] }>(`/api/v1/namespaces/${NS}/pods`, { labelSelector: `serving.knative.dev/revision=${REVISION}` });
const atZero = (what: string) => waitFor(async () => (await revisionPods()).items.length === 0, `the reconcile revision at zero pods ${what}`, 240_000);

interface PodSeen {
  metadata: { name: string; namespace: string; labels?: Record<string, string>; creationTimestamp?: string };
  spec: { nodeName?: string; containers: { name: string; image: string }[] };
  status?: { phase?: string; conditions?: { type: string; status: string }[] };
}

/** A token of a new service account of `ns`, for Walle's audience, with `role` bound (in `ns`, or cluster-wide). */
async function caller(ns: string, name: string, role: { kind: "Role" | "ClusterRole"; name: string; clusterWide?: boolean }): Promise<string> {
  await api().create(`/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: "v1", kind: "ServiceAccount", metadata: { name } });
  const binding = { metadata: { name: `${ns}-${name}` }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: role.kind, name: role.name }, subjects: [{ kind: "ServiceAccount", name, namespace: ns }] };
  if (role.clusterWide) await api().create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRoleBinding", ...binding });
  else await api().create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, { apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", ...binding });
  return (await serviceAccountToken(api(), ns, name, 3600, ["walle"])).token;
}

/** A CloudEvent POSTed by busybox's wget, as the README's curl sends it; `$TOKEN` is the caller's. */
const post = (type: string, id: string, data: string) =>
  `wget -q -O- --header "Authorization: Bearer $TOKEN" --header "Content-Type: application/json" --header "ce-specversion: 1.0" --header "ce-id: ${id}" --header "ce-source: /ops/alice" --header "ce-type: ${type}" --post-data '${data}' http://walle-reconcile.${NS}.svc.cluster.local/`;

/**
 * An admin's resyncs every 2 s from a pod of `ns`, until `name`'s BackupJob ends: no Eventing controller runs on this
 * cluster, so no event moves it on. The pod goes once it has.
 */
async function resyncedUntilEnded(ns: string, name: string, token: string, timeoutMs: number): Promise<Seen> {
  await api().create(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: "v1", kind: "Pod", metadata: { name: `resync-${name}` },
    spec: { restartPolicy: "Never", automountServiceAccountToken: false, containers: [{ name: "c", image: "docker.io/library/busybox:1.36", env: [{ name: "TOKEN", value: token }], command: ["/bin/sh", "-c", `i=0; while true; do i=$((i+1)); ${post("io.ros.walle.resync", "resync-$i", "")} || true; sleep 2; done`] }] },
  });
  try {
    return await waitFor(async () => {
      const bj = await api().get<Seen>(`/apis/ros.io/v1/namespaces/${ns}/backupjobs/${name}`);
      return bj.status?.phase === "Finished" || bj.status?.phase === "Failed" ? bj : undefined;
    }, `BackupJob ${ns}/${name} to end`, timeoutMs);
  } finally {
    await api().delete(`/api/v1/namespaces/${ns}/pods/resync-${name}`, { apiVersion: "v1", kind: "DeleteOptions", gracePeriodSeconds: 0 });
  }
}

/** A namespace with PVC `data` holding `rows`, written by a pod of the application's, and repository Secret `repo`. */
async function tenant(ns: string, rows: string): Promise<string> {
  await api().create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
  await api().create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, { apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: { name: "data" }, spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } } });
  const repository = rest!.repository("shop", PASSWORD, ns);
  await api().create(`/api/v1/namespaces/${ns}/secrets`, { apiVersion: "v1", kind: "Secret", metadata: { name: "repo" }, stringData: { RESTIC_REPOSITORY: repository, RESTIC_PASSWORD: PASSWORD, INITIALIZE_REPO: "true" } });
  await api().create(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: "v1", kind: "Pod", metadata: { name: "writer" },
    spec: { restartPolicy: "Never", volumes: [{ name: "d", persistentVolumeClaim: { claimName: "data" } }], containers: [{ name: "w", image: "docker.io/library/busybox:1.36", command: ["sh", "-c", `mkdir -p /data/db && printf '${rows}' > /data/db/rows`], volumeMounts: [{ name: "d", mountPath: "/data" }] }] },
  });
  await waitFor(async () => (await api().get<Seen>(`/api/v1/namespaces/${ns}/pods/writer`)).status?.phase === "Succeeded", "the writer pod", 120_000);
  await api().delete(`/api/v1/namespaces/${ns}/pods/writer`);
  return repository;
}

beforeAll(async () => {
  stateDir = await mkdtemp(path.join(STATE_ROOT, "walle-test-installed-"));
  cluster = await startCluster({ stateDir, walleCrds: false, knativeServing: true });
  const bins = await resolveResticBinaries();
  rest = await startRestServer({ binary: bins.restServer, dataDir: path.join(stateDir, "repository"), users: { shop: PASSWORD }, host: cluster.node.network.hostIp });
}, 900_000);

afterAll(async () => {
  await rest?.stop();
  await cluster?.stop();
  if (stateDir && !process.env.WALLE_KEEP_TEST_CLUSTER) await rm(stateDir, { recursive: true, force: true });
}, 120_000);

describe("Knative Serving on the local cluster", () => {
  it("runs its controller, webhook, autoscaler and activator as pods on the real node, from the images built here", async () => {
    const version = await requiredVersion("serving", "knative.dev/serving");
    const pods = await api().get<{ items: PodSeen[] }>(`/api/v1/namespaces/${SERVING_NAMESPACE}/pods`);
    const seen = pods.items.map((p) => ({ app: p.metadata.labels?.app, node: p.spec.nodeName, images: p.spec.containers.map((c) => c.image), ready: condition(p, "Ready")?.status }));
    expect(seen.sort((a, b) => String(a.app).localeCompare(String(b.app)))).toEqual(
      [...SERVING_DEPLOYMENTS].sort().map((app) => ({ app, node: "walle-node", images: [servingImage(app, version)], ready: "True" })),
    );
  });

  it("scales a Knative Service's revision to zero, and from zero through the local KIngress and the activator when a pod asks for the Service", async () => {
    const version = await requiredVersion("serving", "knative.dev/serving");
    const ns = "serving-demo";
    await api().create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    await api().create(`/apis/serving.knative.dev/v1/namespaces/${ns}/services`, {
      apiVersion: "serving.knative.dev/v1", kind: "Service", metadata: { name: "hello" },
      spec: {
        template: {
          metadata: { annotations: { "autoscaling.knative.dev/window": "6s" } },
          // httpd as a child of a shell that ends it on SIGTERM: as PID 1 it would ignore the signal, and its pod would
          // take the revision's whole grace period to go.
          spec: { containers: [{ image: "docker.io/library/busybox:1.36", command: ["/bin/sh", "-c", 'mkdir -p /tmp/www && echo "hello from $K_REVISION" > /tmp/www/index.html && httpd -f -p "$PORT" -h /tmp/www & trap "kill $!; exit 0" TERM; wait'] }] },
        },
      },
    });
    const revision = "hello-00001";
    const ready = await waitFor(async () => {
      const r = await api().get<Conditioned>(`/apis/serving.knative.dev/v1/namespaces/${ns}/revisions/${revision}`);
      return condition(r, "Ready")?.status === "True" ? r : undefined;
    }, `revision ${revision} Ready`, 120_000);
    expect(condition(ready, "Ready")?.status).toBe("True");
    // Its first pod goes once the autoscaler sees no traffic: zero pods of the revision.
    const podsOf = `/api/v1/namespaces/${ns}/pods`;
    const selector = { labelSelector: `serving.knative.dev/revision=${revision}` };
    await waitFor(async () => (await api().get<{ items: PodSeen[] }>(podsOf, selector)).items.length === 0, `revision ${revision} at zero pods`, 180_000);

    // Every pod of the revision made from here on is seen, with what Serving put in it.
    const made: PodSeen[] = [];
    const watch = new Informer<PodSeen & { metadata: { name: string } }>(api(), podsOf, (type, pod) => {
      if (type === "add") made.push(pod);
    }, selector);
    await watch.start();
    try {
      const answer = await runOnce(api(), ns, "client", `wget -qO- http://hello.${ns}.svc.cluster.local/ > /dev/termination-log 2>&1`);
      expect(answer).toEqual({ phase: "Succeeded", message: `hello from ${revision}\n` });
    } finally {
      watch.stop();
    }
    expect(made.length).toBeGreaterThan(0);
    expect(made[0]?.spec.containers.map((c) => [c.name, c.image])).toEqual([
      ["user-container", "docker.io/library/busybox:1.36"],
      ["queue-proxy", servingImage("queue", version)],
    ]);
    // The Service is Ready: its Route's KIngress says the local ingress serves it, under the private load balancer's
    // name, which the Route's placeholder Service names.
    const service = await api().get<Conditioned>(`/apis/serving.knative.dev/v1/namespaces/${ns}/services/hello`);
    expect(condition(service, "Ready")?.status).toBe("True");
    const placeholder = await api().get<{ spec: { type: string; externalName?: string } }>(`/api/v1/namespaces/${ns}/services/hello`);
    expect(placeholder.spec).toMatchObject({ type: "ExternalName", externalName: "kingress-private.knative-serving.svc.cluster.local" });
  }, 420_000);
});

describe("Walle installed by kubectl apply -k . on a cluster with Knative Serving", () => {
  it("runs the shipped Knative Service: Ready, its revision's pod started from the image, then zero pods", async () => {
    const { stdout } = await run("kubectl", ["--kubeconfig", cluster!.kubeconfig, "apply", "-k", repoRoot], { maxBuffer: 16 * 1024 * 1024 });
    expect(stdout).toContain("service.serving.knative.dev/walle-reconcile created");
    expect(stdout).toContain("scaledjob.keda.sh/walle-tick created");
    const revision = await waitFor(async () => {
      const r = await api().get<Seen>(`/apis/serving.knative.dev/v1/namespaces/${NS}/revisions/${REVISION}`);
      return condition(r, "Ready")?.status === "True" ? r : undefined;
    }, `revision ${REVISION} Ready`, 180_000);
    // Ready means its pod answered /readyz: the function started from its image, as its service account.
    expect(condition(revision, "ContainerHealthy")?.status).toBe("True");
    const ksvc = await waitFor(async () => {
      const s = await api().get<Conditioned & { status?: { url?: string } }>(`/apis/serving.knative.dev/v1/namespaces/${NS}/services/walle-reconcile`);
      return condition(s, "Ready")?.status === "True" ? s : undefined;
    }, "the walle-reconcile Service Ready", 120_000);
    expect(ksvc.status?.url).toBe(`http://walle-reconcile.${NS}.svc.cluster.local`);
    await atZero("after its first start");
  }, 420_000);

  it("takes a forced backup sent to walle-reconcile.walle-system.svc.cluster.local from zero pods, and resyncs drive it to Finished; then zero pods again", async () => {
    const ns = "shop";
    const repository = await tenant(ns, "order 1\\n");
    await atZero("before the request");

    const started: string[] = [];
    const watch = new Informer<Seen>(api(), `/api/v1/namespaces/${NS}/pods`, (type, pod) => {
      if (type === "add") started.push(pod.metadata.name);
    }, { labelSelector: `serving.knative.dev/revision=${REVISION}` });
    await watch.start();
    try {
      const ci = await caller(ns, "ci", { kind: "ClusterRole", name: "walle-edit" });
      const forced = await runOnce(api(), ns, "force", `${post("io.ros.walle.backup.requested", "force-1", JSON.stringify({ namespace: ns, pvc: "data", repository: { name: "repo", namespace: ns } }))} > /dev/termination-log 2>&1`, { TOKEN: ci });
      expect(forced.phase, forced.message).toBe("Succeeded");
      const body = JSON.parse(forced.message ?? "{}") as { backupJob?: { namespace: string; name: string }; created?: boolean };
      expect(body).toMatchObject({ backupJob: { namespace: ns, name: expect.stringMatching(/^data-forced-[0-9a-f]{10}$/) }, created: true });
      // The revision came up from zero for it.
      expect(started.length).toBeGreaterThan(0);

      const ops = await caller(ns, "ops", { kind: "ClusterRole", name: "walle-trigger-admin", clusterWide: true });
      const done = await resyncedUntilEnded(ns, body.backupJob?.name ?? "", ops, 240_000);
      const snapshots = await listSnapshots({ RESTIC_REPOSITORY: repository, RESTIC_PASSWORD: PASSWORD });
      expect({ phase: done.status?.phase, snapshotId: done.status?.snapshotId }).toEqual({ phase: "Finished", snapshotId: snapshots[0]?.id });
      expect(snapshots.map((s) => s.tags?.filter((t) => t.startsWith("pvc=") || t.startsWith("namespace=")).sort())).toEqual([["namespace=shop", "pvc=data"]]);
    } finally {
      watch.stop();
    }
    await atZero("after the last request");
  }, 600_000);

  it("streams a backupCommand that prints nothing for 75 s, and runs before-hooks that hold one event 80 s, through the installed Service without cutting them", async () => {
    const ns = "db";
    const repository = await tenant(ns, "order 7\\n");
    // Two pods of the application mount the PVC: a hook runs in each, one after the other, inside one event.
    for (const name of ["app-0", "app-1"]) {
      await api().create(`/api/v1/namespaces/${ns}/pods`, {
        apiVersion: "v1", kind: "Pod", metadata: { name },
        spec: { volumes: [{ name: "d", persistentVolumeClaim: { claimName: "data" } }], containers: [{ name: "app", image: "docker.io/library/busybox:1.36", command: ["sleep", "infinity"], volumeMounts: [{ name: "d", mountPath: "/data" }] }] },
      });
      await waitFor(async () => (await api().get<Seen>(`/api/v1/namespaces/${ns}/pods/${name}`)).status?.phase === "Running", `pod ${name} Running`, 120_000);
    }
    const env = { RESTIC_REPOSITORY: repository, RESTIC_PASSWORD: PASSWORD };
    const ops = await caller(ns, "ops", { kind: "ClusterRole", name: "walle-trigger-admin", clusterWide: true });
    const backupJob = (name: string, spec: Record<string, string>) =>
      api().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, { apiVersion: "ros.io/v1", kind: "BackupJob", metadata: { name }, spec: { sourcePvc: "data", repository: { name: "repo", namespace: ns }, ...spec } });

    await backupJob("dump", { backupCommand: "sleep 75; echo '-- dump of db'; cat /data/db/rows" });
    const dumped = await resyncedUntilEnded(ns, "dump", ops, 300_000);
    expect({ phase: dumped.status?.phase, state: condition(dumped, "BackupState")?.reason }).toEqual({ phase: "Finished", state: "Completed" });
    expect(await restic(["dump", dumped.status?.snapshotId ?? "", "/data.app.stdout"], env)).toBe("-- dump of db\norder 7\n");

    await backupJob("hooked", { beforeSnapshot: "sleep 40; echo hooked > /data/hook-$(hostname)" });
    const hooked = await resyncedUntilEnded(ns, "hooked", ops, 300_000);
    expect({ phase: hooked.status?.phase, state: condition(hooked, "BackupState")?.reason }).toEqual({ phase: "Finished", state: "Completed" });
    const listed = (await restic(["ls", "--json", hooked.status?.snapshotId ?? ""], env)).split("\n").filter(Boolean).map((l) => JSON.parse(l) as { name?: string; struct_type?: string });
    expect(listed.filter((n) => n.struct_type === "node" && n.name?.startsWith("hook-")).map((n) => n.name).sort()).toEqual(["hook-app-0", "hook-app-1"]);
  }, 900_000);
});

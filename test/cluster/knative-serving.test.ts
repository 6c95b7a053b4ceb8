// Knative Serving on the local cluster (cluster/knative-serving.ts), on a cluster of its own: its controller,
// webhook, autoscaler and activator run as pods on the real node from the images built here, and a Knative
// Service's revision scales to zero, and from zero through the activator when a pod asks for it by its
// cluster.local name. No KIngress implementation runs yet, so the Route says IngressNotConfigured, as Knative says it
// on any cluster without one.
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, STATE_ROOT, type Cluster } from "../../cluster/index.ts";
import { SERVING_DEPLOYMENTS, SERVING_NAMESPACE, servingImage } from "../../cluster/knative-serving.ts";
import { requiredVersion } from "../../cluster/toolchain.ts";
import { Informer } from "../../lib/k8s/informer.ts";
import { waitFor } from "../support/kube.ts";

let cluster: Cluster | undefined;
let stateDir: string | undefined;
const api = () => cluster!.api;

interface PodSeen {
  metadata: { name: string; namespace: string; labels?: Record<string, string>; creationTimestamp?: string };
  spec: { nodeName?: string; containers: { name: string; image: string }[] };
  status?: { phase?: string; conditions?: { type: string; status: string }[]; containerStatuses?: { state?: { terminated?: { message?: string } } }[] };
}
interface Conditioned {
  status?: { conditions?: { type: string; status: string; reason?: string }[] };
}
const condition = (o: Conditioned, type: string) => o.status?.conditions?.find((c) => c.type === type);

beforeAll(async () => {
  stateDir = await mkdtemp(path.join(STATE_ROOT, "walle-test-serving-"));
  cluster = await startCluster({ stateDir, walleCrds: false, knativeServing: true });
}, 900_000);

afterAll(async () => {
  await cluster?.stop();
  if (stateDir && !process.env.WALLE_KEEP_TEST_CLUSTER) await rm(stateDir, { recursive: true, force: true });
}, 120_000);

/** A pod of busybox that runs `script` once; its termination message once it has ended. */
async function runOnce(ns: string, name: string, script: string): Promise<{ phase?: string; message?: string }> {
  await api().create(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: "v1", kind: "Pod", metadata: { name },
    spec: { restartPolicy: "Never", automountServiceAccountToken: false, containers: [{ name: "client", image: "docker.io/library/busybox:1.36", command: ["/bin/sh", "-c", script] }] },
  });
  const pod = await waitFor(async () => {
    const p = await api().get<PodSeen>(`/api/v1/namespaces/${ns}/pods/${name}`);
    return p.status?.phase === "Succeeded" || p.status?.phase === "Failed" ? p : undefined;
  }, `pod ${ns}/${name} to end`, 120_000);
  return { phase: pod.status?.phase, message: pod.status?.containerStatuses?.[0]?.state?.terminated?.message };
}

describe("Knative Serving on the local cluster", () => {
  it("runs its controller, webhook, autoscaler and activator as pods on the real node, from the images built here", async () => {
    const version = await requiredVersion("serving", "knative.dev/serving");
    const pods = await api().get<{ items: PodSeen[] }>(`/api/v1/namespaces/${SERVING_NAMESPACE}/pods`);
    const seen = pods.items.map((p) => ({ app: p.metadata.labels?.app, node: p.spec.nodeName, images: p.spec.containers.map((c) => c.image), ready: condition(p, "Ready")?.status }));
    expect(seen.sort((a, b) => String(a.app).localeCompare(String(b.app)))).toEqual(
      [...SERVING_DEPLOYMENTS].sort().map((app) => ({ app, node: "walle-node", images: [servingImage(app, version)], ready: "True" })),
    );
  });

  it("scales a Knative Service's revision to zero, and from zero through the activator when a pod asks for it", async () => {
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
      const answer = await runOnce(ns, "client", `wget -qO- http://${revision}.${ns}.svc.cluster.local/ > /dev/termination-log 2>&1`);
      expect(answer).toEqual({ phase: "Succeeded", message: `hello from ${revision}\n` });
    } finally {
      watch.stop();
    }
    expect(made.length).toBeGreaterThan(0);
    expect(made[0]?.spec.containers.map((c) => [c.name, c.image])).toEqual([
      ["user-container", "docker.io/library/busybox:1.36"],
      ["queue-proxy", servingImage("queue", version)],
    ]);
    // With no KIngress implementation, the Route is not ready, as Knative says on any cluster without one.
    const route = await api().get<Conditioned>(`/apis/serving.knative.dev/v1/namespaces/${ns}/routes/hello`);
    expect(condition(route, "Ready")).toMatchObject({ status: "Unknown", reason: "IngressNotConfigured" });
  }, 420_000);
});

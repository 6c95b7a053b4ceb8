// The local node agent: one Node; the local CSI driver's server (cluster/csi-driver.ts) on a unix socket, with its
// StorageClass, default VolumeSnapshotClass and CSIDriver object; and the loop of the scheduler and kubelet. The
// real CSI sidecars and snapshot controller (cluster/storage.ts) drive the driver. The loop is level-triggered:
// every change, and a periodic tick, runs one pass over the cached objects.
import { readFile } from "node:fs/promises";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { Informer, type KubeObject } from "../lib/k8s/informer.ts";
import { isAlreadyExists, type RestClient } from "../lib/k8s/rest.ts";
import { applyObjects } from "./index.ts";
import { csiDirs, pvcVolumes, SNAPSHOT_ERROR_ANNOTATION, storageObjects } from "./csi.ts";
import { CsiDriver, serveCsi, type CsiServer } from "./csi-driver.ts";
import { LocalKubelet, NODE_NAME, type ImageResolver } from "./kubelet.ts";
import type { CertPair, Pki } from "./pki.ts";
import type { Named, Node, NodeStatus, Pod, Pv, Pvc } from "../lib/api/kube.ts";
import type { VolumeSnapshot } from "./types.ts";

export interface NodeAgentOptions {
  readonly api: RestClient;
  readonly stateDir: string;
  readonly images: ImageResolver;
  readonly pki: Pki;
  readonly serving: CertPair;
  readonly log?: (msg: string, extra?: Record<string, unknown>) => void;
}

export interface NodeAgent {
  /** The CSI driver's server, whose socket the CSI sidecars call. */
  readonly csi: CsiServer;
  readonly kubelet: LocalKubelet;
  stop(): Promise<void>;
}

async function ensure(api: RestClient, collection: string, obj: KubeObject): Promise<void> {
  await api.create(collection, obj).catch((e: unknown) => {
    if (!isAlreadyExists(e)) throw e;
  });
}

/** kubelet's read-only logs endpoint, which the API server proxies `pods/log` to. */
async function startKubeletServer(opts: NodeAgentOptions, kubelet: LocalKubelet): Promise<https.Server> {
  const [cert, key, ca] = await Promise.all([readFile(opts.serving.cert), readFile(opts.serving.key), readFile(opts.pki.caCert)]);
  const server = https.createServer({ cert, key, ca, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/?]+)/.exec(req.url ?? "");
    if (!m) {
      res.writeHead(404).end("not found");
      return;
    }
    void kubelet.logs(decodeURIComponent(m[1] ?? ""), decodeURIComponent(m[2] ?? ""), decodeURIComponent(m[3] ?? "")).then((text) => {
      if (text === undefined) res.writeHead(404).end("no logs");
      else {
        const tail = Number(new URL(req.url ?? "/", "https://x").searchParams.get("tailLines") ?? "");
        const lines = text.split("\n");
        res.writeHead(200, { "content-type": "text/plain" }).end(tail > 0 ? lines.slice(-tail - 1).join("\n") : text);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return server;
}

/** The Node, and the local driver's StorageClass, default VolumeSnapshotClass and CSIDriver. */
async function registerNode(api: RestClient, port: number): Promise<void> {
  const now = new Date().toISOString();
  const node: Named<Node> = {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: NODE_NAME, labels: { "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64" } },
  };
  await ensure(api, "/api/v1/nodes", node);
  await api.patch(`/api/v1/nodes/${NODE_NAME}`, { spec: { taints: null } }); // TaintNodesByCondition's not-ready taint: this node is ready
  const status: NodeStatus = {
    conditions: [{ type: "Ready", status: "True", reason: "KubeletReady", message: "local node agent is ready", lastHeartbeatTime: now, lastTransitionTime: now }],
    addresses: [{ type: "InternalIP", address: "127.0.0.1" }, { type: "Hostname", address: NODE_NAME }],
    daemonEndpoints: { kubeletEndpoint: { Port: port } },
    capacity: { cpu: "2", memory: "24Gi", pods: "110" },
    allocatable: { cpu: "2", memory: "24Gi", pods: "110" },
    nodeInfo: {
      kubeletVersion: "v0.0.0-walle-local", kubeProxyVersion: "", containerRuntimeVersion: "walle-local://1",
      operatingSystem: "linux", architecture: "amd64", osImage: "Walle local node", kernelVersion: "", machineID: "", systemUUID: "", bootID: "",
    },
  };
  await api.patch(`/api/v1/nodes/${NODE_NAME}/status`, { status });
  await applyObjects(api, storageObjects());
}

/**
 * The test hook SNAPSHOT_ERROR_ANNOTATION: the message on the VolumeSnapshot being made, or on the PVC it snapshots,
 * found by the name and namespace csi-snapshotter passes in CreateSnapshot's parameters.
 */
async function injectedSnapshotError(api: RestClient, parameters: Readonly<Record<string, string>>): Promise<string | undefined> {
  const name = parameters["csi.storage.k8s.io/volumesnapshot/name"];
  const namespace = parameters["csi.storage.k8s.io/volumesnapshot/namespace"];
  if (!name || !namespace) return undefined;
  const vs = await api.get<VolumeSnapshot>(`/apis/snapshot.storage.k8s.io/v1/namespaces/${namespace}/volumesnapshots/${name}`).catch(() => undefined);
  const pvcName = vs?.spec.source.persistentVolumeClaimName;
  const pvc = pvcName ? await api.get<Pvc>(`/api/v1/namespaces/${namespace}/persistentvolumeclaims/${pvcName}`).catch(() => undefined) : undefined;
  return vs?.metadata?.annotations?.[SNAPSHOT_ERROR_ANNOTATION] ?? pvc?.metadata?.annotations?.[SNAPSHOT_ERROR_ANNOTATION];
}

export async function startNodeAgent(opts: NodeAgentOptions): Promise<NodeAgent> {
  const { api } = opts;
  const log = opts.log ?? (() => {});
  let dirty = false;
  let wake: (() => void) | undefined;
  const kick = () => {
    dirty = true;
    wake?.();
  };
  const inform = <T extends KubeObject>(p: string) => new Informer<T>(api, p, () => kick(), {}, (err) => log("watch failed", { path: p, err: String(err) }));
  const pvcs = inform<Named<Pvc>>("/api/v1/persistentvolumeclaims");
  const pvs = inform<Named<Pv>>("/api/v1/persistentvolumes");
  const pods = inform<Named<Pod>>("/api/v1/pods");
  const url = new URL(api.creds.server);
  const kubelet = new LocalKubelet({
    api, pods, volumes: pvcVolumes(opts.stateDir, pvcs, pvs), stateDir: opts.stateDir, images: opts.images,
    apiserver: { host: url.hostname, port: url.port || "443" }, log, kick,
  });
  const dirs = csiDirs(opts.stateDir);
  const driver = new CsiDriver({ ...dirs, refuseSnapshot: (parameters) => injectedSnapshotError(api, parameters) });
  await driver.init();
  const csi = await serveCsi(driver, dirs.socket, log);

  const server = await startKubeletServer(opts, kubelet);
  const informers = [pvcs, pvs, pods];
  try {
    await registerNode(api, (server.address() as AddressInfo).port);
    await Promise.all(informers.map((i) => i.start()));
  } catch (err) {
    for (const i of informers) i.stop();
    server.close();
    await csi.stop();
    throw err;
  }

  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      dirty = false;
      await kubelet.reconcile();
      if (dirty) continue;
      // Changes wake the loop at once; otherwise a periodic pass catches deadlines and anything a watch missed.
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 1000).unref();
      });
      wake = undefined;
    }
  })();

  return {
    csi,
    kubelet,
    async stop() {
      stopped = true;
      wake?.();
      kubelet.stopAll();
      for (const i of informers) i.stop();
      server.close();
      await loop.catch(() => {});
      await csi.stop();
    },
  };
}

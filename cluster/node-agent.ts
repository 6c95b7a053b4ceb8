// The local node agent: one Node, a StorageClass and a default VolumeSnapshotClass for the local CSI driver,
// and the loops of the scheduler, kubelet and CSI driver. Its loop is level-triggered: every change, and a
// periodic tick, runs one pass over the cached objects.
import { readFile } from "node:fs/promises";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { Informer, type KubeObject } from "../lib/k8s/informer.ts";
import { isAlreadyExists, type RestClient } from "../lib/k8s/rest.ts";
import { DRIVER, LocalCsi, SNAPSHOT_CLASS, STORAGE_CLASS } from "./csi.ts";
import { LocalKubelet, NODE_NAME, type ImageResolver } from "./kubelet.ts";
import type { CertPair, Pki } from "./pki.ts";
import type { Named, Node, NodeStatus, Pod, Pv, Pvc, StorageClass } from "../lib/api/kube.ts";
import type { VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent } from "./types.ts";

export interface NodeAgentOptions {
  readonly api: RestClient;
  readonly stateDir: string;
  readonly images: ImageResolver;
  readonly pki: Pki;
  readonly serving: CertPair;
  readonly log?: (msg: string, extra?: Record<string, unknown>) => void;
}

export interface NodeAgent {
  readonly csi: LocalCsi;
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

/** The Node, its StorageClass and its default VolumeSnapshotClass. */
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
  const storageClass: Named<StorageClass> = {
    apiVersion: "storage.k8s.io/v1",
    kind: "StorageClass",
    metadata: { name: STORAGE_CLASS, annotations: { "storageclass.kubernetes.io/is-default-class": "true" } },
    provisioner: DRIVER,
    reclaimPolicy: "Delete",
    volumeBindingMode: "Immediate",
    allowVolumeExpansion: false,
  };
  await ensure(api, "/apis/storage.k8s.io/v1/storageclasses", storageClass);
  const snapshotClass: Named<VolumeSnapshotClass> = {
    apiVersion: "snapshot.storage.k8s.io/v1",
    kind: "VolumeSnapshotClass",
    metadata: { name: SNAPSHOT_CLASS, annotations: { "snapshot.storage.kubernetes.io/is-default-class": "true" } },
    driver: DRIVER,
    deletionPolicy: "Delete",
  };
  await ensure(api, "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses", snapshotClass);
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
  const caches = {
    pvcs: inform<Named<Pvc>>("/api/v1/persistentvolumeclaims"),
    pvs: inform<Named<Pv>>("/api/v1/persistentvolumes"),
    storageClasses: inform<Named<StorageClass>>("/apis/storage.k8s.io/v1/storageclasses"),
    snapshots: inform<Named<VolumeSnapshot>>("/apis/snapshot.storage.k8s.io/v1/volumesnapshots"),
    snapshotClasses: inform<Named<VolumeSnapshotClass>>("/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses"),
  };
  // The content informer tells the driver of deletions, so the Delete policy removes the storage snapshot.
  const contents = new Informer<Named<VolumeSnapshotContent>>(api, "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents", (type, obj) => {
    if (type === "delete") void csi.contentDeleted(obj);
    kick();
  });
  const csi: LocalCsi = new LocalCsi(api, { ...caches, contents }, opts.stateDir, log);
  const pods = inform<Named<Pod>>("/api/v1/pods");
  const url = new URL(api.creds.server);
  const kubelet = new LocalKubelet({ api, pods, csi, stateDir: opts.stateDir, images: opts.images, apiserver: { host: url.hostname, port: url.port || "443" }, log, kick });
  await csi.init();

  const server = await startKubeletServer(opts, kubelet);
  const informers = [...Object.values(caches), contents, pods];
  try {
    await registerNode(api, (server.address() as AddressInfo).port);
    await Promise.all(informers.map((i) => i.start()));
  } catch (err) {
    for (const i of informers) i.stop();
    server.close();
    throw err;
  }

  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      dirty = false;
      await csi.reconcile();
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
    },
  };
}

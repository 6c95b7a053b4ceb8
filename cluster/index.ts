// The local cluster as one handle: the real control plane, the upstream CRDs, the CSI driver (the node agent), the
// real node, and credentials for any user or service account. Tests and `npm start` both start it through here.
import { chmod, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseAllDocuments } from "yaml";
import type { KubeObject } from "../lib/k8s/informer.ts";
import { RestClient } from "../lib/k8s/rest.ts";
import { credentialsFromKubeconfig } from "./kubeconfig.ts";
import { startControlPlane, type ControlPlane } from "./controlplane.ts";
import { localImages } from "./images.ts";
import { allocateNodeNetwork, startRealNode, type RealNode } from "./node.ts";
import { startNodeAgent, type NodeAgent } from "./node-agent.ts";
import { issueClient, pkiAt, writeKubeconfig } from "./pki.ts";
import { startKeda } from "./keda.ts";
import { startStorageControllers, type StorageControllers } from "./storage.ts";
import { sleep, type Managed } from "./processes.ts";
import { repoRoot, resolveClusterBinaries, resolveBinary, upstreamCrdFiles } from "./toolchain.ts";

export type Log = (msg: string, extra?: Record<string, unknown>) => void;

/**
 * Where local clusters keep their state. Not /tmp: pods often mount an emptyDir at /tmp (Walle's worker does),
 * which would hide the images and volumes under it from their own mount namespaces.
 */
export const STATE_ROOT = "/var/tmp";

export interface Cluster {
  readonly stateDir: string;
  readonly server: string;
  /** Admin kubeconfig (O=system:masters), for kubectl and the client. */
  readonly kubeconfig: string;
  readonly api: RestClient;
  readonly controlPlane: ControlPlane;
  readonly agent: NodeAgent;
  /** The real node: containerd, runc and the kubelet, running pods of Walle's images (cluster/node.ts). */
  readonly node: RealNode;
  /** The CSI snapshot controller and the driver's provisioner and snapshotter sidecars. */
  readonly storage: StorageControllers;
  /** KEDA's operator: it turns ScaledJobs (the tick's) into Jobs. */
  readonly keda: Managed;
  stop(): Promise<void>;
}

/** Parses a multi-document YAML file (or text) into objects, skipping empty documents. */
export function parseManifests(text: string): KubeObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJSON() as KubeObject | null)
    .filter((o): o is KubeObject => o !== null && typeof o === "object" && "kind" in o);
}

interface CrdStatus {
  spec?: { group?: string; names?: { plural?: string }; versions?: { name: string; served?: boolean }[] };
  status?: { conditions?: { type: string; status: string }[] };
}

/**
 * Installs CRDs by server-side apply and waits until each is Established. Multi-version CRDs that convert
 * through a webhook (Knative's PingSource) get strategy None here, because no Knative webhook runs locally.
 */
export async function installCrds(api: RestClient, crds: readonly KubeObject[]): Promise<void> {
  for (const crd of crds) {
    const spec = (crd as { spec?: { conversion?: { strategy?: string } } }).spec;
    if (spec?.conversion?.strategy === "Webhook") spec.conversion = { strategy: "None" };
    await api.patch(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`, crd, "apply", {
      fieldManager: "walle-local",
      force: true,
    });
  }
  for (const crd of crds) {
    let got: CrdStatus;
    for (let i = 0; ; i++) {
      got = await api.get<CrdStatus>(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
      if (got.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) break;
      if (i > 300) throw new Error(`CRD ${crd.metadata.name} was not Established within 30 s`);
      await sleep(100);
    }
    // Established is not yet usable: until its watch cache has initialised, the API server answers 429 "storage is
    // (re)initializing", and a watch opened meanwhile can miss what happens next. Wait for a list to succeed.
    const version = got.spec?.versions?.find((v) => v.served !== false)?.name;
    const path = `/apis/${got.spec?.group}/${version}/${got.spec?.names?.plural}`;
    for (let i = 0; ; i++) {
      const ok = await api.get(path, { limit: 1 }).then(() => true, () => false);
      if (ok) break;
      if (i > 300) throw new Error(`${path} was not served within 30 s of its CRD being Established`);
      await sleep(100);
    }
  }
}

export async function readManifestFiles(files: readonly string[]): Promise<KubeObject[]> {
  const out: KubeObject[] = [];
  for (const f of files) out.push(...parseManifests(await readFile(f, "utf8")));
  return out;
}

/** Walle's own manifests from crds/ (the generated CRDs and the admission policy), if present. */
export async function walleCrdFiles(): Promise<string[]> {
  const dir = path.join(repoRoot, "crds");
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n.endsWith(".yaml") && n !== "kustomization.yaml").sort().map((n) => path.join(dir, n));
}

/** Creates or updates any objects by server-side apply, as `kubectl apply --server-side` does. */
export async function applyObjects(api: RestClient, objects: readonly KubeObject[], opts: { dryRun?: boolean } = {}): Promise<void> {
  const discovery = new Map<string, { name: string; kind: string; namespaced: boolean }[]>();
  for (const obj of objects) {
    const apiVersion = obj.apiVersion ?? "v1";
    const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    let resources = discovery.get(base);
    if (!resources) {
      resources = (await api.get<{ resources: { name: string; kind: string; namespaced: boolean }[] }>(base)).resources;
      discovery.set(base, resources);
    }
    const res = resources.find((r) => r.kind === obj.kind && !r.name.includes("/"));
    if (!res) throw new Error(`${apiVersion} ${obj.kind} is not served`);
    const ns = res.namespaced ? `/namespaces/${obj.metadata.namespace ?? "default"}` : "";
    await api.patch(`${base}${ns}/${res.name}/${obj.metadata.name}`, obj, "apply", {
      fieldManager: "walle-local",
      force: true,
      ...(opts.dryRun ? { dryRun: "All", fieldValidation: "Strict" } : {}),
    });
  }
}

export interface StartOptions {
  readonly stateDir: string;
  readonly log?: Log;
  /** Install Walle's own CRDs from crds/ too (default true). */
  readonly walleCrds?: boolean;
}

export async function startCluster(opts: StartOptions): Promise<Cluster> {
  const log: Log = opts.log ?? (() => {});
  await mkdir(opts.stateDir, { recursive: true });
  await chmod(opts.stateDir, 0o755);
  const started = Date.now();
  const bins = await resolveClusterBinaries((l) => log(l));
  const kedaBin = await resolveBinary("keda-operator", (l) => log(l));
  // Built now, with the rest, rather than when the first event source starts (cluster/event-source.ts) or the
  // storage controllers start.
  for (const name of ["apiserver_receive_adapter", "snapshot-controller", "csi-snapshotter", "csi-provisioner"] as const) await resolveBinary(name, (l) => log(l));
  const crdFiles = await upstreamCrdFiles((l) => log(l));
  // The API server advertises the host end of the real node's link, where pods reach it (cluster/node.ts).
  const controlPlane = await startControlPlane(bins, opts.stateDir, (await allocateNodeNetwork(opts.stateDir)).hostIp);
  const api = new RestClient(credentialsFromKubeconfig(controlPlane.kubeconfig));
  let agent: NodeAgent | undefined;
  let storage: StorageControllers | undefined;
  let keda: Managed | undefined;
  let node: RealNode | undefined;
  try {
    log("Control plane is ready.", { server: controlPlane.server, ms: Date.now() - started });
    const upstream = await readManifestFiles(crdFiles);
    await installCrds(api, upstream.filter((o) => o.kind === "CustomResourceDefinition"));
    // KEDA's ClusterRole, for the operator below; its namespaced Role is for leader election, which is off here.
    await applyObjects(api, upstream.filter((o) => o.kind === "ClusterRole"));
    if (opts.walleCrds !== false) {
      const walle = await readManifestFiles(await walleCrdFiles());
      await installCrds(api, walle.filter((o) => o.kind === "CustomResourceDefinition"));
      await applyObjects(api, walle.filter((o) => o.kind !== "CustomResourceDefinition"));
    }
    agent = await startNodeAgent({ api, stateDir: opts.stateDir, log });
    storage = await startStorageControllers({ api, stateDir: opts.stateDir, socket: agent.csi.socket, log });
    keda = await startKeda({ bin: kedaBin, api, stateDir: opts.stateDir, server: controlPlane.server, pki: controlPlane.pki });
    node = await startRealNode({
      api,
      stateDir: opts.stateDir,
      pki: controlPlane.pki,
      apiPort: Number(new URL(controlPlane.server).port),
      kubelet: await resolveBinary("kubelet", (l) => log(l)),
      kubeProxy: await resolveBinary("kube-proxy", (l) => log(l)),
      kubeScheduler: await resolveBinary("kube-scheduler", (l) => log(l)),
      coredns: await resolveBinary("coredns", (l) => log(l)),
      registry: await resolveBinary("registry", (l) => log(l)),
      csiSocket: agent.csi.socket,
      images: await localImages((l) => log(l)),
      log,
    });
    log("Local cluster is ready.", { ms: Date.now() - started });
  } catch (err) {
    await node?.stop();
    await keda?.stop();
    await storage?.stop();
    await agent?.stop();
    api.close();
    await controlPlane.stop();
    throw err;
  }
  const nodeAgent = agent;
  const storageControllers = storage;
  const operator = keda;
  const realNode = node;
  return {
    stateDir: opts.stateDir,
    server: controlPlane.server,
    kubeconfig: controlPlane.kubeconfig,
    api,
    controlPlane,
    agent: nodeAgent,
    storage: storageControllers,
    keda: operator,
    node: realNode,
    async stop() {
      await realNode.stop();
      await operator.stop();
      await storageControllers.stop();
      await nodeAgent.stop();
      api.close();
      await controlPlane.stop();
    },
  };
}

/** A kubeconfig for any user and groups, with a client certificate signed by the cluster's CA. */
export async function userKubeconfig(stateDir: string, server: string, user: string, groups: readonly string[] = []): Promise<string> {
  const pki = pkiAt(path.join(stateDir, "pki"));
  const cert = await issueClient(pki, user, groups);
  const file = path.join(stateDir, "kubeconfigs", `${user.replace(/[^A-Za-z0-9_.-]/g, "_")}-${groups.join("+").replace(/[^A-Za-z0-9_.+-]/g, "_")}.kubeconfig`);
  await mkdir(path.dirname(file), { recursive: true });
  return writeKubeconfig(file, server, pki.caCert, { name: user, cert });
}

export interface ServiceAccountToken {
  readonly token: string;
  /** When the API server stops accepting it (RFC 3339). */
  readonly expirationTimestamp: string;
}

/** A real token for a service account, from the TokenRequest API. */
export async function serviceAccountToken(admin: RestClient, namespace: string, name: string, expirationSeconds = 3600): Promise<ServiceAccountToken> {
  const tr = await admin.create<{ status: ServiceAccountToken }>(`/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
    apiVersion: "authentication.k8s.io/v1",
    kind: "TokenRequest",
    spec: { expirationSeconds },
  });
  return { token: tr.status.token, expirationTimestamp: tr.status.expirationTimestamp };
}

/** A kubeconfig for a service account, with a real token from the TokenRequest API. */
export async function serviceAccountKubeconfig(admin: RestClient, stateDir: string, namespace: string, name: string, expirationSeconds = 3600): Promise<string> {
  const { token } = await serviceAccountToken(admin, namespace, name, expirationSeconds);
  const file = path.join(stateDir, "kubeconfigs", `sa-${namespace}-${name}.kubeconfig`);
  await mkdir(path.dirname(file), { recursive: true });
  // The CA the admin's client trusts: the local cluster's own, or that of the cluster a kubeconfig named.
  let ca = path.join(stateDir, "pki", "ca.crt");
  if (admin.creds.ca) await writeFile((ca = path.join(stateDir, "kubeconfigs", "server-ca.crt")), admin.creds.ca);
  return writeKubeconfig(file, admin.creds.server, ca, { name: `system:serviceaccount:${namespace}:${name}`, token });
}

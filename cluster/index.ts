// The local cluster as one handle: the real control plane, the upstream CRDs, the CSI driver (the node agent), the
// real node, and credentials for any user or service account. Tests and `npm start` both start it through here.
import { chmod, mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { RestClient } from "../lib/k8s/rest.ts";
import { credentialsFromKubeconfig } from "./kubeconfig.ts";
import { applyObjects, installCrds, parseManifests, readManifestFiles } from "./manifests.ts";
import { startControlPlane, type ControlPlane } from "./controlplane.ts";
import { localImages } from "./images.ts";
import { startLocalIngress, type LocalIngress } from "./kingress.ts";
import { installEventing } from "./knative-eventing.ts";
import { installServing } from "./knative-serving.ts";
import { allocateNodeNetwork, nodeRegistry, startRealNode, type RealNode } from "./node.ts";
import { startNodeAgent, type NodeAgent } from "./node-agent.ts";
import { issueClient, pkiAt, writeKubeconfig } from "./pki.ts";
import { startKeda } from "./keda.ts";
import { startStorageControllers, type StorageControllers } from "./storage.ts";
import type { Managed } from "./processes.ts";
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

export { applyObjects, installCrds, parseManifests, readManifestFiles };

/** Walle's own manifests from crds/ (the generated CRDs and the admission policy), if present. */
export async function walleCrdFiles(): Promise<string[]> {
  const dir = path.join(repoRoot, "crds");
  const names = await readdir(dir).catch(() => [] as string[]);
  return names
    .filter((n) => n.endsWith(".yaml") && n !== "kustomization.yaml")
    .sort()
    .map((n) => path.join(dir, n));
}

export interface StartOptions {
  readonly stateDir: string;
  readonly log?: Log;
  /** Install Walle's own CRDs from crds/ too (default true). */
  readonly walleCrds?: boolean;
  /** Install Knative Serving too, on the real node (cluster/knative-serving.ts). */
  readonly knativeServing?: boolean;
  /** Install Knative Eventing's controller and webhook too, on the real node (cluster/knative-eventing.ts). */
  readonly knativeEventing?: boolean;
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
  for (const name of ["apiserver_receive_adapter", "snapshot-controller", "csi-snapshotter", "csi-provisioner"] as const)
    await resolveBinary(name, (l) => log(l));
  const crdFiles = await upstreamCrdFiles((l) => log(l));
  // The API server advertises the host end of the real node's link, where pods reach it (cluster/node.ts).
  const controlPlane = await startControlPlane(bins, opts.stateDir, (await allocateNodeNetwork(opts.stateDir)).hostIp);
  const api = new RestClient(credentialsFromKubeconfig(controlPlane.kubeconfig));
  let agent: NodeAgent | undefined;
  let storage: StorageControllers | undefined;
  let keda: Managed | undefined;
  let node: RealNode | undefined;
  let ingress: LocalIngress | undefined;
  try {
    log("Control plane is ready.", { server: controlPlane.server, ms: Date.now() - started });
    const upstream = await readManifestFiles(crdFiles);
    await installCrds(
      api,
      upstream.filter((o) => o.kind === "CustomResourceDefinition"),
    );
    // KEDA's ClusterRole, for the operator below; its namespaced Role is for leader election, which is off here.
    await applyObjects(
      api,
      upstream.filter((o) => o.kind === "ClusterRole"),
    );
    if (opts.walleCrds !== false) {
      const walle = await readManifestFiles(await walleCrdFiles());
      await installCrds(
        api,
        walle.filter((o) => o.kind === "CustomResourceDefinition"),
      );
      await applyObjects(
        api,
        walle.filter((o) => o.kind !== "CustomResourceDefinition"),
      );
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
    if (opts.knativeServing) {
      const at = Date.now();
      await installServing({ api, registry: nodeRegistry(node.network), log: (l) => log(l) });
      ingress = await startLocalIngress({ api, host: node.network.hostIp, log: (l) => log(l) });
      log("Knative Serving is ready.", { ms: Date.now() - at });
    }
    if (opts.knativeEventing) {
      const at = Date.now();
      await installEventing({ api, registry: nodeRegistry(node.network), log: (l) => log(l) });
      log("Knative Eventing is ready.", { ms: Date.now() - at });
    }
    log("Local cluster is ready.", { ms: Date.now() - started });
  } catch (err) {
    await ingress?.stop();
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
  const localIngress = ingress;
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
      await localIngress?.stop();
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

/** A real token for a service account, from the TokenRequest API: for the API server, or for `audiences`. */
export async function serviceAccountToken(
  admin: RestClient,
  namespace: string,
  name: string,
  expirationSeconds = 3600,
  audiences?: readonly string[],
): Promise<ServiceAccountToken> {
  const tr = await admin.create<{ status: ServiceAccountToken }>(`/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
    apiVersion: "authentication.k8s.io/v1",
    kind: "TokenRequest",
    spec: { expirationSeconds, ...(audiences ? { audiences } : {}) },
  });
  return { token: tr.status.token, expirationTimestamp: tr.status.expirationTimestamp };
}

/** A kubeconfig for a service account, with a real token from the TokenRequest API. */
export async function serviceAccountKubeconfig(
  admin: RestClient,
  stateDir: string,
  namespace: string,
  name: string,
  expirationSeconds = 3600,
): Promise<string> {
  const { token } = await serviceAccountToken(admin, namespace, name, expirationSeconds);
  const file = path.join(stateDir, "kubeconfigs", `sa-${namespace}-${name}.kubeconfig`);
  await mkdir(path.dirname(file), { recursive: true });
  // The CA the admin's client trusts: the local cluster's own, or that of the cluster a kubeconfig named.
  let ca = path.join(stateDir, "pki", "ca.crt");
  if (admin.creds.ca) await writeFile((ca = path.join(stateDir, "kubeconfigs", "server-ca.crt")), admin.creds.ca);
  return writeKubeconfig(file, admin.creds.server, ca, { name: `system:serviceaccount:${namespace}:${name}`, token });
}

// The real control plane, started as envtest starts it: etcd and kube-apiserver on loopback with RBAC, a
// throwaway CA, an admin client certificate and a service-account signing key; then kube-controller-manager
// with the controllers Walle relies on.
import { randomBytes } from "node:crypto";
import { readFile, mkdir, writeFile } from "node:fs/promises";
import https from "node:https";
import path from "node:path";
import { createPki, issueClient, issueServing, writeKubeconfig, type Pki } from "./pki.ts";
import { freePort, startProcess, waitUntil, type Managed } from "./processes.ts";

export interface ControlPlaneBinaries {
  readonly etcd: string;
  readonly kubeApiserver: string;
  readonly kubeControllerManager: string;
}

export interface ControlPlane {
  readonly server: string;
  readonly pki: Pki;
  /** Admin kubeconfig (O=system:masters). */
  readonly kubeconfig: string;
  readonly processes: readonly Managed[];
  /**
   * Stops kube-apiserver (SIGTERM, as a restart of its static pod would), leaves it down for `downMs`, and starts it
   * again with the same flags, state and port; resolves once it is ready again. For fault tests.
   */
  restartApiServer(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The kube-controller-manager controllers Walle needs: Jobs, garbage collection of owned objects, volume
 * binding (with the PV/PVC protection finalizers that admission adds), namespaces, service accounts and their
 * tokens, TTL of finished Jobs, the kube-root-ca.crt ConfigMap that projected tokens mount, aggregated
 * ClusterRoles, Deployments, the endpoints of Services; and the node lifecycle, which lifts the not-ready taint of a
 * node once its kubelet reports it Ready.
 */
export const controllers = [
  "node-lifecycle-controller",
  "job-controller",
  "garbage-collector-controller",
  "persistentvolume-binder-controller",
  "persistentvolume-protection-controller",
  "persistentvolumeclaim-protection-controller",
  "namespace-controller",
  "serviceaccount-controller",
  "serviceaccount-token-controller",
  "ttl-after-finished-controller",
  "root-ca-certificate-publisher-controller",
  // Aggregated ClusterRoles (Kubernetes' admin, edit and view), which Walle's walle-edit joins.
  "clusterrole-aggregation-controller",
  // Deployments, so the original's example workload gets its pod (and pod-type plans something to select).
  "deployment-controller",
  "replicaset-controller",
  // A Service's endpoints from the pods its selector picks, in both APIs (kube-proxy and the cluster's DNS read
  // EndpointSlices; Knative Serving reads Endpoints), and the slices of Endpoints written by hand.
  "endpoints-controller",
  "endpointslice-controller",
  "endpointslice-mirroring-controller",
  // ResourceQuota status, without which the ResourceQuota admission enforces no quota (a namespace's quota that
  // refuses Walle's worker Jobs is a case Walle must fail loudly on, test/cluster/reconcile-backup.test.ts).
  "resourcequota-controller",
] as const;

/** GET a path of the API server with a client certificate; true on 2xx. */
export async function apiGetOk(server: string, pki: Pki, cert: { cert: string; key: string }, urlPath: string): Promise<boolean> {
  const [ca, crt, key] = await Promise.all([readFile(pki.caCert), readFile(cert.cert), readFile(cert.key)]);
  return new Promise((resolve) => {
    const req = https.get(new URL(urlPath, server), { ca, cert: crt, key, timeout: 2000 }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 500) < 300);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
  });
}

/**
 * A person's bearer token, as a cluster's OIDC or webhook authenticator would vouch for one: the API server's static
 * token file holds one for the user `alice` in group `developers` (USER_TOKEN), so tests can call Walle as a user
 * and not only as a service account.
 */
export const LOCAL_USER = { name: "alice", uid: "alice-uid", groups: ["developers"] } as const;

export function userTokenFile(pkiDir: string): string {
  return path.join(pkiDir, "user-tokens.csv");
}

async function writeUserTokens(pkiDir: string): Promise<string> {
  const file = userTokenFile(pkiDir);
  const token = randomBytes(24).toString("base64url");
  await writeFile(file, `${token},${LOCAL_USER.name},${LOCAL_USER.uid},"${LOCAL_USER.groups.join(",")}"\n`, { mode: 0o600 });
  return file;
}

/** The local user's token (LOCAL_USER), read from the cluster's state. */
export async function localUserToken(stateDir: string): Promise<string> {
  return (await readFile(userTokenFile(path.join(stateDir, "pki")), "utf8")).split(",")[0] ?? "";
}

/** `advertiseAddress` is what the `kubernetes` Service's endpoints say: where pods reach the API server. */
export async function startControlPlane(bins: ControlPlaneBinaries, stateDir: string, advertiseAddress = "127.0.0.1"): Promise<ControlPlane> {
  const logs = path.join(stateDir, "logs");
  await mkdir(logs, { recursive: true });
  const pki = await createPki(path.join(stateDir, "pki"));
  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const server = `https://127.0.0.1:${apiPort}`;
  const serving = await issueServing(
    pki,
    "kube-apiserver",
    ["127.0.0.1", "10.0.0.1"],
    ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"],
  );
  const admin = await issueClient(pki, "walle-admin", ["system:masters"]);
  const userTokens = await writeUserTokens(pki.dir);
  const kcmUser = await issueClient(pki, "system:kube-controller-manager");
  const kubeconfig = await writeKubeconfig(path.join(stateDir, "kubeconfig"), server, pki.caCert, { name: "walle-admin", cert: admin });
  const kcmKubeconfig = await writeKubeconfig(path.join(stateDir, "kcm.kubeconfig"), server, pki.caCert, {
    name: "system:kube-controller-manager",
    cert: kcmUser,
  });

  const processes: Managed[] = [];
  let restartApiServer: ControlPlane["restartApiServer"] = () => Promise.reject(new Error("kube-apiserver has not started"));
  const stop = async () => {
    for (const p of [...processes].reverse()) await p.stop();
  };
  try {
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const etcd = startProcess(
      "etcd",
      bins.etcd,
      [
        `--data-dir=${path.join(stateDir, "etcd")}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${peerPort}`,
        "--unsafe-no-fsync", // a throwaway cluster: durability is not worth the fsync latency
        "--log-level=warn",
      ],
      path.join(logs, "etcd.log"),
    );
    processes.push(etcd);
    await waitUntil("etcd", async () => (await fetch(`${etcdUrl}/health`)).ok, 30_000, [etcd]);

    const startApiServer = () =>
      startProcess(
        "kube-apiserver",
        bins.kubeApiserver,
        [
          `--etcd-servers=${etcdUrl}`,
          `--cert-dir=${pki.dir}`,
          `--tls-cert-file=${serving.cert}`,
          `--tls-private-key-file=${serving.key}`,
          `--client-ca-file=${pki.caCert}`,
          `--token-auth-file=${userTokens}`,
          `--secure-port=${apiPort}`,
          "--bind-address=127.0.0.1",
          `--advertise-address=${advertiseAddress}`,
          "--service-cluster-ip-range=10.0.0.0/24",
          // Admission webhooks behind a Service (Knative Serving's) are reached at an endpoint's pod address, which the
          // host routes to the node; kube-proxy's Service addresses exist only inside the node's namespace.
          "--enable-aggregator-routing=true",
          // The Node authorizer and NodeRestriction bound the real node's kubelet to its own Node and pods.
          "--authorization-mode=Node,RBAC",
          "--enable-admission-plugins=NodeRestriction",
          "--allow-privileged=true",
          `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
          `--service-account-key-file=${pki.serviceAccountPub}`,
          `--service-account-signing-key-file=${pki.serviceAccountKey}`,
          "--kubelet-preferred-address-types=InternalIP",
          `--kubelet-certificate-authority=${pki.caCert}`,
          `--kubelet-client-certificate=${admin.cert}`,
          `--kubelet-client-key=${admin.key}`,
          "--v=1",
        ],
        path.join(logs, "kube-apiserver.log"),
      );
    processes.push(startApiServer());
    await waitUntil("kube-apiserver /readyz", () => apiGetOk(server, pki, admin, "/readyz"), 90_000, processes);
    restartApiServer = async (downMs = 0) => {
      const at = processes.findIndex((p) => p.name === "kube-apiserver");
      await processes[at]?.stop();
      await new Promise((r) => setTimeout(r, downMs));
      const again = startApiServer();
      processes[at] = again;
      await waitUntil("kube-apiserver /readyz after its restart", () => apiGetOk(server, pki, admin, "/readyz"), 90_000, [again]);
    };

    const kcm = startProcess(
      "kube-controller-manager",
      bins.kubeControllerManager,
      [
        `--kubeconfig=${kcmKubeconfig}`,
        `--authentication-kubeconfig=${kcmKubeconfig}`,
        `--authorization-kubeconfig=${kcmKubeconfig}`,
        "--use-service-account-credentials=true",
        `--controllers=${controllers.join(",")}`,
        `--service-account-private-key-file=${pki.serviceAccountKey}`,
        `--root-ca-file=${pki.caCert}`,
        "--leader-elect=false",
        "--secure-port=0",
        "--v=1",
      ],
      path.join(logs, "kube-controller-manager.log"),
    );
    processes.push(kcm);
    // The service-account controller creating `default` proves kube-controller-manager is working.
    await waitUntil(
      "kube-controller-manager (ServiceAccount default/default)",
      () => apiGetOk(server, pki, admin, "/api/v1/namespaces/default/serviceaccounts/default"),
      60_000,
      processes,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { server, pki, kubeconfig, processes, restartApiServer: (downMs) => restartApiServer(downMs), stop };
}

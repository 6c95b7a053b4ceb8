// KEDA's real operator in the local cluster, built from the Go module proxy (toolchain/keda). It runs as its own
// user under upstream's ClusterRole (config/rbac/role.yaml of the same module), watches the install namespace,
// and turns the tick's ScaledJob into Jobs that the local node runs. Its bind addresses move off the defaults,
// and its gRPC metrics service gets a throwaway certificate from the cluster's CA.
import { copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import type { RestClient } from "../lib/k8s/rest.ts";
import { INSTALL_NAMESPACE } from "../lib/api/constants.ts";
import { issueServing, type Pki } from "./pki.ts";
import { freePort, startProcess, waitUntil, type Managed } from "./processes.ts";
import type { KubeObject } from "../lib/k8s/informer.ts";
import { applyObjects, readManifestFiles, userKubeconfig } from "./index.ts";
import { repoRoot } from "./toolchain.ts";

/** The operator's user, from a client certificate of the cluster's CA. */
export const KEDA_USER = "keda-operator";

export interface KedaOptions {
  readonly bin: string;
  readonly api: RestClient;
  readonly stateDir: string;
  readonly server: string;
  readonly pki: Pki;
}

export async function startKeda(opts: KedaOptions): Promise<Managed> {
  // Upstream's ClusterRole is installed with the CRDs; this binds it to the operator's own user.
  await applyObjects(opts.api, [
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: "keda-operator-local" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "keda-operator" },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: KEDA_USER }],
    } as never,
  ]);
  const kubeconfig = await userKubeconfig(opts.stateDir, opts.server, KEDA_USER);
  const certDir = path.join(opts.stateDir, "keda", "certs");
  await mkdir(certDir, { recursive: true });
  const serving = await issueServing(opts.pki, "keda-operator", ["127.0.0.1"], ["localhost", "keda-operator", `keda-operator.${INSTALL_NAMESPACE}.svc`]);
  await copyFile(serving.cert, path.join(certDir, "tls.crt"));
  await copyFile(serving.key, path.join(certDir, "tls.key"));
  await copyFile(opts.pki.caCert, path.join(certDir, "ca.crt"));
  const probe = await freePort();
  const grpc = await freePort();
  const logFile = path.join(opts.stateDir, "logs", "keda-operator.log");
  const keda = startProcess(
    "keda-operator",
    opts.bin,
    [
      `--kubeconfig=${kubeconfig}`,
      "--leader-elect=false",
      "--metrics-bind-address=0",
      `--health-probe-bind-address=127.0.0.1:${probe}`,
      `--metrics-service-bind-address=127.0.0.1:${grpc}`,
      `--cert-dir=${certDir}`,
      "--enable-cert-rotation=false",
      "--enable-webhook-patching=false",
      "--enable-apiservice-patching=false",
      "--zap-log-level=info",
    ],
    logFile,
    {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/",
      // Every namespace, as upstream's install watches: the tick's ScaledJob is wherever Walle is installed.
      WATCH_NAMESPACE: "",
      KEDA_CLUSTER_OBJECT_NAMESPACE: INSTALL_NAMESPACE,
      POD_NAMESPACE: INSTALL_NAMESPACE,
      OPERATOR_NAME: "keda-operator",
    },
  );
  await waitUntil("keda-operator healthy", async () => (await fetch(`http://127.0.0.1:${probe}/readyz`).catch(() => undefined))?.ok === true, 60_000, [keda]);
  return keda;
}

/**
 * keda/scaledjob.yaml as shipped, for a local cluster (localizeScaledJob).
 */
export async function localScaledJob(o: LocalScaledJob): Promise<KubeObject> {
  const [scaledJob] = await readManifestFiles([path.join(repoRoot, "keda", "scaledjob.yaml")]);
  if (!scaledJob) throw new Error("keda/scaledjob.yaml holds no ScaledJob");
  return localizeScaledJob(scaledJob, o);
}

export interface LocalScaledJob {
  /** The tick's WALLE_CLUSTER_NAME (restic's --host); left as it is when not given. */
  readonly clusterName?: string;
  /** Where the tick's workers report progress: the locally run reconcile function. */
  readonly progressSinkUrl?: string;
  /** A cron window every other minute, polled every 5 s. */
  readonly shortWindow?: boolean;
}

/**
 * The tick's ScaledJob (as shipped, or as an install made it) for a local cluster: the tick's cluster name and where
 * its workers report progress set, and, with `shortWindow`, a cron window every other minute polled every 5 s, the
 * same trigger on a shorter time scale, so a test or `npm start -- --once` need not wait for the shipped 5-minute
 * cadence. It changes and returns `scaledJob`.
 */
export function localizeScaledJob(scaledJob: KubeObject, o: LocalScaledJob): KubeObject {
  const spec = (
    scaledJob as unknown as {
      spec: {
        pollingInterval: number;
        triggers: { metadata: Record<string, string> }[];
        jobTargetRef: { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } };
      };
    }
  ).spec;
  for (const e of spec.jobTargetRef.template.spec.containers[0]?.env ?? []) {
    if (e.name === "WALLE_CLUSTER_NAME" && o.clusterName) e.value = o.clusterName;
    if (e.name === "WALLE_PROGRESS_SINK_URL" && o.progressSinkUrl) e.value = o.progressSinkUrl;
  }
  if (o.shortWindow) {
    spec.pollingInterval = 5;
    spec.triggers[0] = { ...spec.triggers[0], metadata: { ...spec.triggers[0]?.metadata, start: "*/2 * * * *", end: "1-59/2 * * * *" } };
  }
  return scaledJob;
}

// Knative Serving on the local cluster, for real: its controller, webhook, autoscaler and activator, built from
// knative.dev/serving (toolchain/serving) and run as pods on the real node from images built here, installed from
// upstream's own release config (config/core of the same module, and the networking and caching files it links
// to), read from the modules and never copied into this repository. queue-proxy, built from the same release, is
// the sidecar Serving's controller puts beside every revision's container.
//
// What the local cluster changes in that config, and nothing else:
//   - every ko:// image names the image built here, under the repository upstream publishes to (gcr.io), which the
//     node's registry serves;
//   - config-deployment skips tag-to-digest resolution for the registries the node's registry stands in for (the
//     cluster reaches no other registry);
//   - config-autoscaler scales to zero after 6 s instead of a minute, so that a test sees it happen;
//   - config-network names the local cluster's own KIngress implementation (cluster/kingress.ts) as the ingress.
// The HPAs and PDBs of the activator and webhook are left out (no metrics server runs here), as is the
// routing-serving-certs certificate (no cert-manager).
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { KubeObject } from "../lib/k8s/informer.ts";
import type { RestClient } from "../lib/k8s/rest.ts";
import { buildBinaryImage } from "../scripts/images.ts";
import { applyObjects, installCrds, parseManifests } from "./manifests.ts";
import { INGRESS_CLASS } from "./kingress.ts";
import { pushImage } from "./node.ts";
import { waitUntil } from "./processes.ts";
import { cacheDir, requiredVersion, resolveBinary, upstreamFiles, type BinaryName } from "./toolchain.ts";

export const SERVING_NAMESPACE = "knative-serving";

/** Serving's five programs: the binary the toolchain builds, and the command ko names its image after. */
const PROGRAMS = [
  ["knative-controller", "controller"],
  ["knative-webhook", "webhook"],
  ["knative-autoscaler", "autoscaler"],
  ["knative-activator", "activator"],
  ["knative-queue", "queue"],
] as const satisfies readonly (readonly [BinaryName, string])[];

/** The Deployments that must be available before the webhook configurations go in. */
export const SERVING_DEPLOYMENTS = ["controller", "webhook", "autoscaler", "activator"] as const;

const CORE = [
  "100-namespace.yaml",
  "200-roles/activator.yaml",
  "200-roles/addressable-resolvers-clusterrole.yaml",
  "200-roles/clusterrole-namespaced.yaml",
  "200-roles/clusterrole.yaml",
  "200-roles/podspecable-bindings-clusterrole.yaml",
  "200-serviceaccount.yaml",
  "300-resources/configuration.yaml",
  "300-resources/domain-mapping.yaml",
  "300-resources/metric.yaml",
  "300-resources/podautoscaler.yaml",
  "300-resources/revision.yaml",
  "300-resources/route.yaml",
  "300-resources/service.yaml",
  "configmaps/autoscaler.yaml",
  "configmaps/certmanager.yaml",
  "configmaps/defaults.yaml",
  "configmaps/deployment.yaml",
  "configmaps/domain.yaml",
  "configmaps/features.yaml",
  "configmaps/gc.yaml",
  "configmaps/leader-election.yaml",
  "configmaps/logging.yaml",
  "configmaps/observability.yaml",
  "deployments/activator.yaml",
  "deployments/autoscaler.yaml",
  "deployments/controller.yaml",
  "deployments/webhook.yaml",
  "webhooks/secret.yaml",
  "webhooks/defaulting.yaml",
  "webhooks/resource-validation.yaml",
  "webhooks/configmap-validation.yaml",
].map((f) => `config/core/${f}`);

/**
 * The files config/core links to in knative/networking and knative/caching (the module zip leaves the links out):
 * the networking CRDs and config-network, and the caching Image CRD the revision reconciler watches.
 */
async function linkedFiles(log: (line: string) => void): Promise<string[]> {
  const networking = await requiredVersion("serving", "knative.dev/networking");
  const caching = await requiredVersion("serving", "knative.dev/caching");
  return [
    ...(await upstreamFiles({ module: "knative.dev/networking", version: networking, files: ["config/certificate.yaml", "config/domain-claim.yaml", "config/ingress.yaml", "config/serverlessservice.yaml", "config/config-network.yaml"] }, { dir: "knative", what: "release config", paths: true }, log)),
    ...(await upstreamFiles({ module: "knative.dev/caching", version: caching, files: ["config/image.yaml"] }, { dir: "knative", what: "release config", paths: true }, log)),
  ];
}

/** The image reference of one of Serving's programs, as upstream's release names its repository. */
export const servingImage = (command: string, version: string): string => `gcr.io/knative-releases/knative.dev/serving/cmd/${command}:${version}`;

/** Registries whose images the controller must not try to resolve to digests: those the node's registry serves. */
const LOCAL_REGISTRIES = ["kind.local", "ko.local", "dev.local", "docker.io", "index.docker.io", "ghcr.io", "gcr.io"];

/** Serving's release config as the local cluster installs it (see the file's head), in upstream's order. */
export async function servingManifests(log: (line: string) => void = () => {}): Promise<KubeObject[]> {
  const version = await requiredVersion("serving", "knative.dev/serving");
  const core = await upstreamFiles({ module: "knative.dev/serving", version, files: CORE }, { dir: "knative", what: "release config", paths: true }, log);
  const linked = await linkedFiles(log);
  // Upstream's order: the namespace and RBAC, then the CRDs (its own and the linked ones), config, Deployments and webhooks.
  const files = [...core.slice(0, 7), ...linked.filter((f) => !f.endsWith("config-network.yaml")), ...core.slice(7, 24), ...linked.filter((f) => f.endsWith("config-network.yaml")), ...core.slice(24)];
  const objects: KubeObject[] = [];
  for (const f of files) {
    let text = await readFile(f, "utf8");
    text = text.replace(/ko:\/\/knative\.dev\/serving\/cmd\/([a-z-]+)/g, (_, command: string) => servingImage(command, version));
    objects.push(...parseManifests(text));
  }
  for (const o of objects as (KubeObject & { data?: Record<string, string> })[]) {
    if (o.kind !== "ConfigMap") continue;
    if (o.metadata.name === "config-deployment") o.data = { ...o.data, "registries-skipping-tag-resolving": LOCAL_REGISTRIES.join(",") };
    if (o.metadata.name === "config-autoscaler") o.data = { ...o.data, "stable-window": "6s", "scale-to-zero-grace-period": "6s" };
    if (o.metadata.name === "config-network") o.data = { ...o.data, "ingress-class": INGRESS_CLASS };
  }
  return objects;
}

/** Builds the images of Serving's programs (once) and pushes them to the node's registry under upstream's names. */
export async function pushServingImages(registry: string, log: (line: string) => void = () => {}): Promise<void> {
  const version = await requiredVersion("serving", "knative.dev/serving");
  for (const [binary, command] of PROGRAMS) {
    const image = await buildBinaryImage({ dir: path.join(cacheDir(), "images", "knative-serving"), name: command, binary: await resolveBinary(binary, log), tag: version, log });
    await pushImage(registry, image, servingImage(command, version));
  }
}

/** Whether an object is one of the webhook configurations, which go in once the webhook serves. */
const isWebhookConfiguration = (o: KubeObject): boolean => o.kind === "MutatingWebhookConfiguration" || o.kind === "ValidatingWebhookConfiguration";

/** Deployments of `namespace` named `names` that are not yet available, for a wait that says which. */
async function unavailable(api: RestClient, namespace: string, names: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const name of names) {
    const d = await api.get<{ status?: { conditions?: { type: string; status: string }[] } }>(`/apis/apps/v1/namespaces/${namespace}/deployments/${name}`).catch(() => undefined);
    if (!d?.status?.conditions?.some((c) => c.type === "Available" && c.status === "True")) out.push(name);
  }
  return out;
}

/**
 * Installs Serving as its release config does, in its order: the images pushed, the CRDs served, the rest applied,
 * and, once every Deployment is available (the webhook's certificate made), the webhook configurations.
 */
export async function installServing(o: { readonly api: RestClient; readonly registry: string; readonly log?: (line: string) => void }): Promise<void> {
  const log = o.log ?? (() => {});
  await pushServingImages(o.registry, log);
  const objects = await servingManifests(log);
  await installCrds(o.api, objects.filter((x) => x.kind === "CustomResourceDefinition"));
  await applyObjects(o.api, objects.filter((x) => x.kind !== "CustomResourceDefinition" && !isWebhookConfiguration(x)));
  let waiting: string[] = [];
  await waitUntil(`Knative Serving's Deployments available (${SERVING_DEPLOYMENTS.join(", ")})`, async () => (waiting = await unavailable(o.api, SERVING_NAMESPACE, SERVING_DEPLOYMENTS)).length === 0, 180_000).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; not available: ${waiting.join(", ")}`, { cause: err });
  });
  const webhooks = objects.filter(isWebhookConfiguration);
  await applyObjects(o.api, webhooks);
  // The webhook takes the configurations over (its CA bundle, its rules); until it has, the API server cannot call it.
  const path = (w: KubeObject) => `/apis/admissionregistration.k8s.io/v1/${w.kind === "MutatingWebhookConfiguration" ? "mutating" : "validating"}webhookconfigurations/${w.metadata.name}`;
  await waitUntil("Knative Serving's webhook configurations to carry its CA bundle", async () => {
    for (const w of webhooks) {
      const got = await o.api.get<{ webhooks?: { clientConfig?: { caBundle?: string } }[] }>(path(w));
      if (!got.webhooks?.length || got.webhooks.some((h) => !h.clientConfig?.caBundle)) return false;
    }
    return true;
  }, 60_000);
}

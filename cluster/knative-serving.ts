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
import type { KubeObject } from "../lib/k8s/informer.ts";
import type { RestClient } from "../lib/k8s/rest.ts";
import { INGRESS_CLASS } from "./kingress.ts";
import { installKnative, knativeImage, releaseFiles, type KnativeRelease } from "./knative.ts";
import { requiredVersion } from "./toolchain.ts";

export const SERVING_NAMESPACE = "knative-serving";

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
    ...(await releaseFiles(
      "knative.dev/networking",
      networking,
      ["config/certificate.yaml", "config/domain-claim.yaml", "config/ingress.yaml", "config/serverlessservice.yaml", "config/config-network.yaml"],
      log,
    )),
    ...(await releaseFiles("knative.dev/caching", caching, ["config/image.yaml"], log)),
  ];
}

/** The image reference of one of Serving's programs, as upstream's release names its repository. */
export const servingImage = (command: string, version: string): string => knativeImage("knative.dev/serving", command, version);

/** Registries whose images the controller must not try to resolve to digests: those the node's registry serves. */
const LOCAL_REGISTRIES = ["kind.local", "ko.local", "dev.local", "docker.io", "index.docker.io", "ghcr.io", "gcr.io"];

export const serving: KnativeRelease = {
  name: "Knative Serving",
  module: "knative.dev/serving",
  toolchain: "serving",
  namespace: SERVING_NAMESPACE,
  programs: [
    ["knative-controller", "controller"],
    ["knative-webhook", "webhook"],
    ["knative-autoscaler", "autoscaler"],
    ["knative-activator", "activator"],
    ["knative-queue", "queue"],
  ],
  deployments: SERVING_DEPLOYMENTS,
  async files(version, log) {
    const core = await releaseFiles("knative.dev/serving", version, CORE, log);
    const linked = await linkedFiles(log);
    // Upstream's order: the namespace and RBAC, then the CRDs (its own and the linked ones), config, Deployments and webhooks.
    return [
      ...core.slice(0, 7),
      ...linked.filter((f) => !f.endsWith("config-network.yaml")),
      ...core.slice(7, 24),
      ...linked.filter((f) => f.endsWith("config-network.yaml")),
      ...core.slice(24),
    ];
  },
  configure(objects) {
    for (const o of objects as (KubeObject & { data?: Record<string, string> })[]) {
      if (o.kind !== "ConfigMap") continue;
      if (o.metadata.name === "config-deployment") o.data = { ...o.data, "registries-skipping-tag-resolving": LOCAL_REGISTRIES.join(",") };
      if (o.metadata.name === "config-autoscaler") o.data = { ...o.data, "stable-window": "6s", "scale-to-zero-grace-period": "6s" };
      if (o.metadata.name === "config-network") o.data = { ...o.data, "ingress-class": INGRESS_CLASS };
    }
    return objects;
  },
};

/** Installs Serving (cluster/knative.ts says how). */
export const installServing = (o: { readonly api: RestClient; readonly registry: string; readonly log?: (line: string) => void }): Promise<void> =>
  installKnative(serving, o);

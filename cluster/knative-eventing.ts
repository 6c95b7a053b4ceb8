// Knative Eventing on the local cluster, for real: its controller and webhook built from knative.dev/eventing
// (toolchain/eventing, the release of the ApiServerSource adapter the host-run event source uses) and run as pods on
// the real node, installed from upstream's own release config (config/core of the module, with the image ConfigMaps
// its controller's Deployment reads from third_party), through cluster/knative.ts. So the shipped ApiServerSource and
// PingSource are reconciled by Knative itself: the controller makes the ApiServerSource's adapter Deployment (the
// receive adapter's image, built here) and scales the PingSource adapter (mtping) up for the first PingSource.
//
// What the local cluster leaves out of that config, and nothing else is changed but the image names:
//   - the JobSink and RequestReply Deployments (their programs are not built: nothing of Walle uses them);
//   - the webhook's HPA (no metrics server runs here).
import type { RestClient } from "../lib/k8s/rest.ts";
import { installKnative, knativeImage, releaseFiles, type KnativeRelease } from "./knative.ts";

export const EVENTING_NAMESPACE = "knative-eventing";

/** The Deployments that must be available before the webhook configurations go in. */
export const EVENTING_DEPLOYMENTS = ["eventing-controller", "eventing-webhook"] as const;

const LEFT_OUT = new Set(["deployments/job-sink.yaml", "deployments/request-reply.yaml", "deployments/webhook-hpa.yaml"]);

/** config/core as upstream's release resolves it (the directory's files in their order), less what is left out. */
const CORE = [
  "100-namespace.yaml",
  "200-eventing-serviceaccount.yaml",
  "200-job-sink-serviceaccount.yaml",
  "200-pingsource-mt-adapter-serviceaccount.yaml",
  "200-request-reply-serviceaccount.yaml",
  "200-webhook-serviceaccount.yaml",
  ...[
    "default-broker-channel",
    "default-broker",
    "default-channel",
    "default-pingsource",
    "features",
    "kreference-mapping",
    "leader-election",
    "logging",
    "observability",
    "sugar",
    "tracing",
  ].map((f) => `configmaps/${f}.yaml`),
  ...["controller", "job-sink", "pingsource-mt-adapter", "request-reply", "webhook-hpa", "webhook"].map((f) => `deployments/${f}.yaml`),
  ...[
    "apiserversource",
    "broker",
    "channel",
    "containersource",
    "eventpolicy",
    "eventtransform",
    "eventtype",
    "integrationsink",
    "integrationsource",
    "jobsink",
    "parallel",
    "pingsource",
    "requestreply",
    "sequence",
    "sinkbindings",
    "subscription",
    "trigger",
  ].map((f) => `resources/${f}.yaml`),
  ...[
    "addressable-resolvers-clusterrole",
    "auth-proxy-role",
    "broker-clusterrole",
    "channelable-manipulator-clusterrole",
    "clusterrole-namespaced",
    "controller-clusterroles",
    "crossnamespace-clusterrole",
    "job-sink-clusterrole",
    "pingsource-mt-adapter-clusterrole",
    "podspecable-binding-clusterrole",
    "request-reply-clusterrole",
    "source-observer-clusterrole",
    "sources-controller-clusterroles",
    "webhook-clusterrole",
    "webhook-role",
  ].map((f) => `roles/${f}.yaml`),
  ...["config-validation", "defaulting", "resource-validation", "secret", "sinkbindings"].map((f) => `webhooks/${f}.yaml`),
]
  .filter((f) => !LEFT_OUT.has(f))
  .map((f) => `config/core/${f}`);

/** The ConfigMaps of the integration and transformation images that the controller's Deployment reads its env from. */
const THIRD_PARTY = ["eventing-integrations-images", "eventing-transformations-images"].map((f) => `third_party/eventing-integrations-latest/${f}.yaml`);

/** The image reference of one of Eventing's programs, as upstream's release names its repository. */
export const eventingImage = (command: string, version: string): string => knativeImage("knative.dev/eventing", command, version);

export const eventing: KnativeRelease = {
  name: "Knative Eventing",
  module: "knative.dev/eventing",
  toolchain: "eventing",
  namespace: EVENTING_NAMESPACE,
  programs: [
    ["eventing-controller", "controller"],
    ["eventing-webhook", "webhook"],
    ["eventing-mtping", "mtping"],
    ["apiserver_receive_adapter", "apiserver_receive_adapter"],
  ],
  deployments: EVENTING_DEPLOYMENTS,
  async files(version, log) {
    return [...(await releaseFiles("knative.dev/eventing", version, CORE, log)), ...(await releaseFiles("knative.dev/eventing", version, THIRD_PARTY, log))];
  },
  configure: (objects) => objects,
};

/** Installs Eventing (cluster/knative.ts says how). */
export const installEventing = (o: { readonly api: RestClient; readonly registry: string; readonly log?: (line: string) => void }): Promise<void> =>
  installKnative(eventing, o);

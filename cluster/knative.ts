// Installing a Knative release on the local cluster, for real, as Serving and Eventing both are
// (cluster/knative-serving.ts, cluster/knative-eventing.ts): its programs built by the toolchain and pushed as images
// under the names upstream's release gives them (gcr.io/knative-releases/<module>/cmd/<command>:<version>, which the
// node's registry serves), and its release config read from the module at that version, never copied here. Each
// release says which of its files it installs and what the local cluster changes in them; the install itself goes
// as upstream's does: CRDs served, then the rest, then, once the Deployments are available (their webhook's
// certificate made), the webhook configurations, waited for until the webhook has put its CA bundle in them.
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { KubeObject } from "../lib/k8s/informer.ts";
import type { RestClient } from "../lib/k8s/rest.ts";
import { buildBinaryImage } from "../scripts/images.ts";
import { applyObjects, installCrds, parseManifests } from "./manifests.ts";
import { pushImage } from "./node.ts";
import { waitUntil } from "./processes.ts";
import { cacheDir, requiredVersion, resolveBinary, upstreamFiles, type BinaryName } from "./toolchain.ts";

export interface KnativeRelease {
  /** What the logs and errors call it: "Knative Serving". */
  readonly name: string;
  /** Its module (knative.dev/serving) and the toolchain module that pins its version (toolchain/serving). */
  readonly module: string;
  readonly toolchain: string;
  readonly namespace: string;
  /** Its programs the cluster runs: the binary the toolchain builds, and the command ko names its image after. */
  readonly programs: readonly (readonly [BinaryName, string])[];
  /** The Deployments that must be available before the webhook configurations go in. */
  readonly deployments: readonly string[];
  /** Its release config's files, in upstream's order, as local paths. */
  files(version: string, log: (line: string) => void): Promise<string[]>;
  /** What the local cluster changes in the parsed objects (the file's head of each release says what and why). */
  configure(objects: KubeObject[]): KubeObject[];
}

/** The image reference of one of a release's programs, as upstream's release names its repository. */
export const knativeImage = (module: string, command: string, version: string): string => `gcr.io/knative-releases/${module}/cmd/${command}:${version}`;

/** Files of a Knative module's release config, read from the module (the toolchain's version of it) into the cache. */
export const releaseFiles = (module: string, version: string, files: readonly string[], log: (line: string) => void): Promise<string[]> =>
  upstreamFiles({ module, version, files }, { dir: "knative", what: "release config", paths: true }, log);

/** The release's objects as the local cluster installs them: its ko:// images named as pushed, then configured. */
async function knativeManifests(release: KnativeRelease, version: string, log: (line: string) => void): Promise<KubeObject[]> {
  const ko = new RegExp(`ko://${release.module.replace(/[./]/g, "\\$&")}/cmd/([a-z_-]+)`, "g");
  const objects: KubeObject[] = [];
  for (const f of await release.files(version, log)) {
    const text = (await readFile(f, "utf8")).replace(ko, (_, command: string) => knativeImage(release.module, command, version));
    objects.push(...parseManifests(text));
  }
  return release.configure(objects);
}

/** Builds the images of a release's programs (once) and pushes them to the node's registry under upstream's names. */
async function pushImages(release: KnativeRelease, version: string, registry: string, log: (line: string) => void): Promise<void> {
  const dir = path.join(cacheDir(), "images", `knative-${path.basename(release.module)}`);
  for (const [binary, command] of release.programs) {
    const image = await buildBinaryImage({ dir, name: command, binary: await resolveBinary(binary, log), tag: version, log });
    await pushImage(registry, image, knativeImage(release.module, command, version));
  }
}

/** Whether an object is one of the webhook configurations, which go in once the webhook serves. */
const isWebhookConfiguration = (o: KubeObject): boolean => o.kind === "MutatingWebhookConfiguration" || o.kind === "ValidatingWebhookConfiguration";

/** Deployments of `namespace` named `names` that are not yet available, for a wait that says which. */
async function unavailable(api: RestClient, namespace: string, names: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const name of names) {
    const d = await api
      .get<{ status?: { conditions?: { type: string; status: string }[] } }>(`/apis/apps/v1/namespaces/${namespace}/deployments/${name}`)
      .catch(() => undefined);
    if (!d?.status?.conditions?.some((c) => c.type === "Available" && c.status === "True")) out.push(name);
  }
  return out;
}

/** Installs a release as its release config does, in its order (see the file's head). */
export async function installKnative(
  release: KnativeRelease,
  o: { readonly api: RestClient; readonly registry: string; readonly log?: (line: string) => void },
): Promise<void> {
  const log = o.log ?? (() => {});
  const version = await requiredVersion(release.toolchain, release.module);
  await pushImages(release, version, o.registry, log);
  const objects = await knativeManifests(release, version, log);
  await installCrds(
    o.api,
    objects.filter((x) => x.kind === "CustomResourceDefinition"),
  );
  await applyObjects(
    o.api,
    objects.filter((x) => x.kind !== "CustomResourceDefinition" && !isWebhookConfiguration(x)),
  );
  let waiting: string[] = [];
  await waitUntil(
    `${release.name}'s Deployments available (${release.deployments.join(", ")})`,
    async () => (waiting = await unavailable(o.api, release.namespace, release.deployments)).length === 0,
    180_000,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; not available: ${waiting.join(", ")}`, { cause: err });
  });
  const webhooks = objects.filter(isWebhookConfiguration);
  await applyObjects(o.api, webhooks);
  // The webhook takes the configurations over (its CA bundle, its rules); until it has, the API server cannot call it.
  const at = (w: KubeObject) =>
    `/apis/admissionregistration.k8s.io/v1/${w.kind === "MutatingWebhookConfiguration" ? "mutating" : "validating"}webhookconfigurations/${w.metadata.name}`;
  await waitUntil(
    `${release.name}'s webhook configurations to carry its CA bundle`,
    async () => {
      for (const w of webhooks) {
        const got = await o.api.get<{ webhooks?: { clientConfig?: { caBundle?: string } }[] }>(at(w));
        if (!got.webhooks?.length || got.webhooks.some((h) => !h.clientConfig?.caBundle)) return false;
      }
      return true;
    },
    60_000,
  );
}

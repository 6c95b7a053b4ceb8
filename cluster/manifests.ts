// Manifests as files and text, and applied as kubectl applies them: multi-document YAML into objects, CRDs waited
// for until they serve, and any object by server-side apply.
import { readFile } from "node:fs/promises";
import { parseAllDocuments } from "yaml";
import type { KubeObject } from "../lib/k8s/informer.ts";
import type { RestClient } from "../lib/k8s/rest.ts";
import { sleep } from "./processes.ts";

/** Parses a multi-document YAML file (or text) into objects, skipping empty documents. */
export function parseManifests(text: string): KubeObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJSON() as KubeObject | null)
    .filter((o): o is KubeObject => o !== null && typeof o === "object" && "kind" in o);
}

export async function readManifestFiles(files: readonly string[]): Promise<KubeObject[]> {
  const out: KubeObject[] = [];
  for (const f of files) out.push(...parseManifests(await readFile(f, "utf8")));
  return out;
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
      const ok = await api.get(path, { limit: 1 }).then(
        () => true,
        () => false,
      );
      if (ok) break;
      if (i > 300) throw new Error(`${path} was not served within 30 s of its CRD being Established`);
      await sleep(100);
    }
  }
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

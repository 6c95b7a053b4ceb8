// The Helm chart (helm/charts/walle, generated from the kustomization by `npm run crdgen`) renders, with the real
// helm, exactly what `kubectl apply -k .` installs: the same objects, with the release's namespace for
// walle-system and the operator's configuration file from the values; the original Walle's values file works
// unchanged, and a value the chart does not use is refused, naming it.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, inject, it } from "vitest";
import { parseManifests, readManifestFiles } from "../../cluster/index.ts";
import type { KubeObject } from "../../lib/k8s/informer.ts";
import { repoRoot } from "../../cluster/toolchain.ts";
import { loadConfig } from "../../lib/app/config.ts";
import { CHART_DIR, kustomizationFiles } from "../../scripts/chart.ts";

const run = promisify(execFile);
const chart = path.join(repoRoot, CHART_DIR);

async function helmTemplate(namespace: string, ...args: string[]): Promise<KubeObject[]> {
  const { stdout } = await run(inject("helm"), ["template", "walle", chart, "--namespace", namespace, "--include-crds", ...args], {
    maxBuffer: 16 * 1024 * 1024,
  });
  return parseManifests(stdout);
}

const key = (o: KubeObject) => `${o.kind} ${o.metadata.namespace ?? ""}/${o.metadata.name}`;

type Pod = {
  containers: { image: string; env: { name: string; value?: string; valueFrom?: unknown }[]; volumeMounts?: { name: string }[] }[];
  volumes?: { name: string }[];
};
function podOf(o: KubeObject): Pod | undefined {
  const spec = (o as unknown as { spec?: { template?: { spec?: Pod }; jobTargetRef?: { template: { spec: Pod } } } }).spec;
  return o.kind === "ScaledJob"
    ? spec?.jobTargetRef?.template.spec
    : o.kind === "Service" && (o.apiVersion ?? "").startsWith("serving.knative.dev/")
      ? spec?.template?.spec
      : undefined;
}

describe("the Helm chart", () => {
  it("renders the kustomization's objects, but for the namespace object and the configuration file it adds", async () => {
    const kustomized = (await readManifestFiles(kustomizationFiles(".").map((f) => path.join(repoRoot, f)))).filter((o) => o.kind !== "Namespace");
    const rendered = await helmTemplate("walle-system");
    const config = rendered.find((o) => o.kind === "ConfigMap" && o.metadata.name === "walle-config");
    expect(config).toBeDefined();
    const objects = rendered.filter((o) => o !== config);
    expect(objects.map(key).sort()).toEqual(kustomized.map(key).sort());
    // Knative's webhook refuses an env var from a fieldRef unless its kubernetes.podspec-fieldref feature is on,
    // which a default install leaves off: neither install gives a Knative Service one.
    const knativeServices = [...kustomized, ...objects].filter((o) => o.kind === "Service" && (o.apiVersion ?? "").startsWith("serving.knative.dev/"));
    expect(knativeServices.length).toBeGreaterThan(0);
    expect(
      knativeServices.flatMap((o) =>
        (podOf(o)?.containers ?? []).flatMap((c) =>
          c.env.filter((e) => JSON.stringify(e.valueFrom ?? {}).includes("fieldRef")).map((e) => `${key(o)} ${e.name}`),
        ),
      ),
    ).toEqual([]);
    for (const object of objects) {
      const pod = podOf(object);
      for (const c of pod?.containers ?? []) {
        expect(c.env.filter((e) => e.name === "WALLE_CONFIG" || e.name === "WALLE_INSTALL_NAMESPACE")).toEqual([
          { name: "WALLE_INSTALL_NAMESPACE", value: "walle-system" },
          { name: "WALLE_CONFIG", value: "/etc/walle/config.yml" },
        ]);
        c.env = c.env.filter((e) => e.name !== "WALLE_CONFIG" && e.name !== "WALLE_INSTALL_NAMESPACE");
        expect(c.volumeMounts).toEqual([{ name: "walle-config", mountPath: "/etc/walle", readOnly: true }]);
        delete c.volumeMounts;
      }
      if (pod) {
        expect(pod.volumes).toEqual([{ name: "walle-config", configMap: { name: "walle-config" } }]);
        delete pod.volumes;
      }
      expect(object, key(object)).toEqual(kustomized.find((o) => key(o) === key(object)));
    }
  });

  it("takes the original Walle's examples/values.yml unchanged, installing into the release's namespace", async () => {
    const values = path.join(repoRoot, "examples", "values.yml");
    const rendered = await helmTemplate("walle", "--values", values);
    // The CRDs' descriptions name the kustomization's namespace as an example; no object names it.
    expect(JSON.stringify(rendered.filter((o) => o.kind !== "CustomResourceDefinition"))).not.toContain("walle-system");
    for (const o of rendered.filter((x) => x.metadata.namespace !== undefined)) expect(o.metadata.namespace, key(o)).toBe("walle");
    const images = rendered.flatMap((o) => podOf(o)?.containers ?? []).map((c) => c.image);
    expect(images.sort()).toEqual(["ghcr.io/ros-io/walle-reconcile:latest", "ghcr.io/ros-io/walle-tick:latest"]);
    // The tenant guard trusts Walle's service accounts in the release's namespace.
    const guard = rendered.find((o) => o.kind === "ValidatingAdmissionPolicy" && o.metadata.name === "walle-tenant-guard");
    expect(JSON.stringify(guard)).toContain("system:serviceaccount:walle:walle-reconcile");
    // The configuration file is the values' `config`, and the functions read it as the original's.
    const file =
      (rendered.find((o) => o.kind === "ConfigMap" && o.metadata.name === "walle-config") as unknown as { data: Record<string, string> }).data["config.yml"] ??
      "";
    const { walle } = await loadConfig({ WALLE_CONFIG: "/etc/walle/config.yml", WALLE_INSTALL_NAMESPACE: "walle" }, "walle-reconcile", () =>
      Promise.resolve(file),
    );
    expect(walle).toMatchObject({
      workerImage: "ghcr.io/jess-sol/walle/worker:latest",
      clusterName: "minikube",
      installNamespace: "walle",
      snapClassMappings: [{ storage_class: "csi-hostpath-sc", snapshot_class: "csi-hostpath-snapclass" }],
    });
    // The same two settings reach the functions' environment, which wins over the file.
    const env = rendered.flatMap((o) => podOf(o)?.containers ?? []).flatMap((c) => c.env);
    // The worker image through ConfigMap walle-worker, the one place the admission policy walle-worker-image reads too.
    expect(env.filter((e) => e.name === "WALLE_WORKER_IMAGE").map((e) => e.valueFrom)).toEqual(
      [0, 1].map(() => ({ configMapKeyRef: { name: "walle-worker", key: "image" } })),
    );
    const worker = rendered.find((o) => o.kind === "ConfigMap" && o.metadata.name === "walle-worker") as unknown as
      { data: Record<string, string> } | undefined;
    expect(worker?.data).toEqual({ image: "ghcr.io/jess-sol/walle/worker:latest" });
    // And the admission policy pins Jobs to it, as a CEL string of its own (no parameter: knative/reconcile-bounds.yaml).
    const pin = rendered.find((o) => o.kind === "ValidatingAdmissionPolicy" && o.metadata.name === "walle-worker-image") as unknown as
      { spec: { paramKind?: unknown; variables: { name: string; expression: string }[] } } | undefined;
    expect({ paramKind: pin?.spec.paramKind, variables: pin?.spec.variables }).toEqual({
      paramKind: undefined,
      variables: [{ name: "image", expression: "'ghcr.io/jess-sol/walle/worker:latest'" }],
    });
    expect(env.filter((e) => e.name === "WALLE_CLUSTER_NAME").map((e) => e.value)).toEqual(["minikube", "minikube"]);
    expect(await readFile(values, "utf8")).toContain("snap_class_mappings:");
  });

  it.each([
    ["config.snap_class_mapping=x", /additional properties 'snap_class_mapping' not allowed/],
    ["image.registry=x", /additional properties 'registry' not allowed/],
    ["config.cluster_name=", /cluster_name.*(minLength|length must be)/s],
  ])("refuses --set %s, naming it", async (set, message) => {
    const refused = await helmTemplate("walle", "--set", set).then(
      () => "rendered",
      (e: { stderr?: string }) => e.stderr ?? "",
    );
    expect(refused).toMatch(message);
  });
});

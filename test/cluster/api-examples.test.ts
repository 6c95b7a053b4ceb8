import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { parseResource } from "../../lib/api/index.ts";
import type { ResourceKind } from "../../lib/api/index.ts";
import { isNotFound } from "../../lib/k8s/rest.ts";
import { admin } from "../support/kube.ts";

// Every example is applied, as written, to the real kube-apiserver, the way the original's README did it:
// `kubectl apply -f example/...` into the current namespace, `default`.

const EXAMPLES = resolve(import.meta.dirname, "../../examples");
const NAMESPACE = "default";
const FIELD_MANAGER = "kubectl";

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [key: string]: unknown;
}

interface ApiResource {
  name: string;
  kind: string;
  namespaced: boolean;
}

const discovered = new Map<string, ApiResource[]>();

/** The object's REST path, found by discovery as kubectl finds it. */
async function pathOf(object: KubeObject): Promise<string> {
  const base = object.apiVersion.includes("/") ? `/apis/${object.apiVersion}` : `/api/${object.apiVersion}`;
  let resources = discovered.get(base);
  if (resources === undefined) {
    resources = (await admin().get<{ resources: ApiResource[] }>(base)).resources;
    discovered.set(base, resources);
  }
  const resource = resources.find((r) => r.kind === object.kind && !r.name.includes("/"));
  if (resource === undefined) throw new Error(`${object.apiVersion} ${object.kind} is not served`);
  const scope = resource.namespaced ? `/namespaces/${object.metadata.namespace ?? NAMESPACE}` : "";
  return `${base}${scope}/${resource.name}/${object.metadata.name}`;
}

const applied: string[] = [];

/** `kubectl apply --server-side`: idempotent, so reruns against the same cluster work. */
async function apply(object: KubeObject): Promise<Record<string, unknown>> {
  const path = await pathOf(object);
  applied.push(path);
  return admin().patch(path, object, "apply", { fieldManager: FIELD_MANAGER, force: true });
}

function documents(file: string): KubeObject[] {
  return parseAllDocuments(readFileSync(join(EXAMPLES, file), "utf8")).map((doc) => doc.toJS() as KubeObject);
}

/** `kubectl create secret generic NAME --from-env-file=FILE`: KEY=VALUE lines, # comments and blanks skipped. */
function secretFromEnvFile(name: string, namespace: string, file: string): KubeObject {
  const stringData = Object.fromEntries(
    readFileSync(join(EXAMPLES, file), "utf8")
      .split("\n")
      .filter((line) => line.trim() !== "" && !line.trimStart().startsWith("#"))
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
  return { apiVersion: "v1", kind: "Secret", metadata: { name, namespace }, type: "Opaque", stringData };
}

afterAll(async () => {
  for (const path of applied.reverse()) {
    await admin()
      .delete(path)
      .catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
  }
});

describe("the original's examples are accepted unchanged", () => {
  it("workload.yml and pvc.yml", async () => {
    for (const object of [...documents("workload.yml"), ...documents("pvc.yml")]) {
      const stored = await apply(object);
      expect(stored).toMatchObject({ kind: object.kind, metadata: { name: object.metadata.name, namespace: NAMESPACE } });
    }
  });

  it("restic-secret.env, as the README creates it", async () => {
    const stored = await apply(secretFromEnvFile("restic-rest-config", NAMESPACE, "restic-secret.env"));
    expect(Object.keys(stored.data as Record<string, string>).sort()).toEqual(["INITIALIZE_REPO", "RESTIC_PASSWORD", "RESTIC_REPOSITORY"]);
  });

  it("backup-job.yml", async () => {
    const [object] = documents("backup-job.yml");
    if (object === undefined) throw new Error("backup-job.yml is empty");
    const job = parseResource("BackupJob", await apply(object));
    expect(job.metadata.namespace).toBe(NAMESPACE);
    expect(job.spec).toEqual({ sourcePvc: "example-volume", repository: { name: "restic-rest-config", namespace: "default" } });
  });

  it("backup-schedule.yml, with the original's defaults filled in by the apiserver", async () => {
    const [object] = documents("backup-schedule.yml");
    if (object === undefined) throw new Error("backup-schedule.yml is empty");
    const stored = (await apply(object)) as { spec: Record<string, unknown> };
    // Read back raw, before any parsing, to see what the CRD's defaults did.
    expect(stored.spec).toMatchObject({ interval: "60s", keepSucceeded: 1, keepFailed: 3, suspend: false });
    expect(parseResource("BackupSchedule", stored).spec.plans[0]?.fieldSelector).toEqual([
      { field: "metadata.namespace", operator: "equals", value: "default" },
    ]);
  });

  it("the README's getting started: namespace, Secret and schedule", async () => {
    await apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: "walle" } });
    await apply({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "restic-repo", namespace: "walle" },
      stringData: {
        INITIALIZE_REPO: "yes",
        RESTIC_PASSWORD: "averysecurepassword",
        RESTIC_REST_USERNAME: "user",
        RESTIC_REST_PASSWORD: "pass",
      },
    });
    const [object] = documents("getting-started-schedule.yml");
    if (object === undefined) throw new Error("getting-started-schedule.yml is empty");
    const stored = parseResource("BackupSchedule", await apply(object));
    expect(stored.spec).toMatchObject({ interval: "6h", plans: [{ type: "pod" }], keepSucceeded: 1, keepFailed: 3 });
  });
});

describe("the new examples are accepted", () => {
  it.each([
    ["backup-schedule-prune-check.yml", "BackupSchedule"],
    ["backup-restore.yml", "BackupRestore"],
  ] as const)("%s", async (file, kind: ResourceKind) => {
    for (const object of documents(file)) {
      const stored = parseResource(kind, await apply(object));
      expect(stored.metadata.name).toBe(object.metadata.name);
    }
  });
});

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { customResourceDefinition, openApiSchema } from "../../lib/api/crd.ts";
import { generatedFiles } from "../../lib/api/manifests.ts";
import { kinds, resourcePath } from "../../lib/api/registry.ts";
import type { StructuralSchema } from "../../lib/api/structural.ts";
import { toStructural } from "../../lib/api/structural.ts";
import { tenantGuardBinding, tenantGuardPolicy } from "../../lib/api/tenant-guard.ts";

const CRDS = resolve(import.meta.dirname, "../../crds");

describe("crds/ is in sync with lib/api", () => {
  const files = generatedFiles();

  it.each(files.map((file) => [file.name, file.content] as const))("crds/%s is current (run `npm run crdgen`)", (name, content) => {
    const path = join(CRDS, name);
    expect(existsSync(path), `crds/${name} is missing`).toBe(true);
    expect(readFileSync(path, "utf8")).toBe(content);
  });

  it("crds/ holds no other yaml files", () => {
    const onDisk = readdirSync(CRDS).filter((name) => /\.ya?ml$/.test(name));
    expect(onDisk.sort()).toEqual(files.map((file) => file.name).sort());
  });

  it("the kustomization lists every manifest", () => {
    const kustomization = files.find((file) => file.name === "kustomization.yaml");
    for (const file of files.filter((f) => f.name !== "kustomization.yaml")) {
      expect(kustomization?.content).toContain(`- ${file.name}`);
    }
  });
});

/** Every schema node, with its path, depth first. */
function* nodes(schema: StructuralSchema, path = ""): Generator<[string, StructuralSchema]> {
  yield [path, schema];
  for (const [name, child] of Object.entries(schema.properties ?? {})) yield* nodes(child, `${path}.${name}`);
  if (schema.items !== undefined) yield* nodes(schema.items, `${path}[]`);
  if (schema.additionalProperties !== undefined) yield* nodes(schema.additionalProperties, `${path}[*]`);
}

describe("the CRDs keep the original's names and scopes", () => {
  // From jess-sol/restic-k8s src/crd/{schedule,set,job}.rs: #[kube(group = "ros.io", version = "v1", shortname = ...)].
  it.each([
    ["BackupSchedule", "backupschedules", "Cluster", ["backup-schedule"]],
    ["BackupSet", "backupsets", "Cluster", ["backup-set"]],
    ["BackupJob", "backupjobs", "Namespaced", ["backup-job"]],
    ["BackupRestore", "backuprestores", "Namespaced", ["backup-restore"]],
  ] as const)("%s", (kind, plural, scope, shortNames) => {
    const def = kinds.find((k) => k.kind === kind);
    expect(def).toBeDefined();
    if (def === undefined) return;
    const crd = customResourceDefinition(def);
    expect(crd.metadata.name).toBe(`${plural}.ros.io`);
    expect(crd.spec.group).toBe("ros.io");
    expect(crd.spec.scope).toBe(scope);
    expect(crd.spec.names).toEqual({
      kind,
      listKind: `${kind}List`,
      plural,
      singular: kind.toLowerCase(),
      shortNames,
      categories: ["walle"],
    });
    const [version] = crd.spec.versions;
    expect(version?.name).toBe("v1");
    expect(version?.subresources).toEqual({ status: {} });
    expect(version?.additionalPrinterColumns.at(-1)?.name).toBe("Age");
  });
});

describe.each(kinds.map((def) => [def.kind, openApiSchema(def)] as const))("the %s schema", (_kind, schema) => {
  const all = [...nodes(schema)];

  it("is structural: every node has a type and nothing preserves unknown fields", () => {
    for (const [path, node] of all) {
      expect(node.type, `type of ${path}`).toBeDefined();
      expect(Object.keys(node)).not.toContain("x-kubernetes-preserve-unknown-fields");
    }
  });

  it("bounds what CEL rules read, so the apiserver's cost estimate stays low", () => {
    for (const [path, node] of all) {
      if (node["x-kubernetes-validations"] === undefined) continue;
      if (node.type === "string") expect(node.maxLength, `maxLength of ${path}`).toBeDefined();
    }
    for (const [path, node] of all) {
      if (node.type === "array") expect(node.maxItems, `maxItems of ${path}`).toBeDefined();
    }
  });

  it("describes spec fields and gives every rule a message", () => {
    const spec = schema.properties?.spec;
    for (const [path, node] of nodes(spec ?? {}, ".spec")) {
      if (path.endsWith("[]") || path.endsWith("[*]") || path.includes("matchExpressions[]")) continue;
      expect(node.description, `description of ${path}`).toBeTruthy();
    }
    for (const [, node] of all) {
      for (const rule of node["x-kubernetes-validations"] ?? []) expect(rule.message.length).toBeGreaterThan(10);
    }
  });

  it("has observedGeneration and conditions where the kind reports them", () => {
    expect(schema.properties?.status?.properties?.observedGeneration?.type).toBe("integer");
  });
});

describe("the BackupSchedule CRD carries the original's defaults", () => {
  const schedule = kinds.find((def) => def.kind === "BackupSchedule");
  const spec = schedule === undefined ? undefined : openApiSchema(schedule).properties?.spec;

  it("keepSucceeded 1, keepFailed 3, suspend false", () => {
    expect(spec?.properties?.keepSucceeded?.default).toBe(1);
    expect(spec?.properties?.keepFailed?.default).toBe(3);
    expect(spec?.properties?.suspend?.default).toBe(false);
    expect(spec?.required).toEqual(["repository", "plans"]);
  });

  it("lists the original's states", () => {
    expect(schedule === undefined ? [] : openApiSchema(schedule).properties?.status?.properties?.state?.enum).toEqual([
      "Waiting",
      "Running",
      "Finished",
      "FinishedWithFailures",
      "CheckFailed",
    ]);
  });
});

describe("the tenant guard", () => {
  const policy = tenantGuardPolicy();

  it("covers namespaced BackupJobs and BackupRestores on create and update", () => {
    expect(policy.spec.matchConstraints.resourceRules).toEqual([
      {
        apiGroups: ["ros.io"],
        apiVersions: ["v1"],
        operations: ["CREATE", "UPDATE"],
        resources: ["backupjobs", "backuprestores"],
      },
    ]);
    expect(policy.spec.failurePolicy).toBe("Fail");
  });

  it("trusts exactly walle-system's walle-reconcile and walle-tick", () => {
    expect(policy.spec.matchConditions[0]?.expression).toBe(
      "!(request.userInfo.username in ['system:serviceaccount:walle-system:walle-reconcile', " + "'system:serviceaccount:walle-system:walle-tick'])",
    );
  });

  it("treats an omitted repository namespace as the install namespace", () => {
    expect(policy.spec.variables[0]?.expression).toContain(": 'walle-system'");
  });

  it("is bound to deny", () => {
    expect(tenantGuardBinding().spec).toEqual({ policyName: "walle-tenant-guard", validationActions: ["Deny"] });
  });
});

describe("toStructural", () => {
  const convert = (schema: z.ZodType) => toStructural(z.toJSONSchema(schema, { io: "input" }));

  it("refuses what a structural schema cannot say", () => {
    expect(() => convert(z.object({ a: z.union([z.string(), z.number()]) }))).toThrow(/Cannot express \.a in a CRD schema/);
    expect(() => convert(z.object({ a: z.string().nullable() }))).toThrow(/Cannot express \.a in a CRD schema: unsupported type/);
    expect(() => convert(z.object({ a: z.object({ b: z.string() }).or(z.object({ c: z.string() })) }))).toThrow(
      /Cannot express \.a in a CRD schema: unsupported keywords anyOf/,
    );
  });

  it("turns zod's integer ranges into formats and exclusive bounds into flags", () => {
    expect(convert(z.int32().min(0))).toEqual({ type: "integer", format: "int32", minimum: 0 });
    expect(convert(z.int())).toEqual({ type: "integer", format: "int64" });
    expect(convert(z.number().positive())).toEqual({ type: "number", minimum: 0, exclusiveMinimum: true });
  });

  it("keeps records as typed maps and literals as enums", () => {
    expect(convert(z.record(z.string(), z.string()))).toEqual({
      type: "object",
      additionalProperties: { type: "string" },
    });
    expect(convert(z.literal("pod"))).toEqual({ type: "string", enum: ["pod"] });
  });
});

describe("resourcePath", () => {
  it.each([
    [["BackupSchedule"], "/apis/ros.io/v1/backupschedules"],
    [["BackupSchedule", undefined, "nightly"], "/apis/ros.io/v1/backupschedules/nightly"],
    [["BackupJob"], "/apis/ros.io/v1/backupjobs"],
    [["BackupJob", "team-a", "job-1"], "/apis/ros.io/v1/namespaces/team-a/backupjobs/job-1"],
    [["BackupRestore", "team-a"], "/apis/ros.io/v1/namespaces/team-a/backuprestores"],
  ] as const)("%j → %s", ([kind, namespace, name], path) => {
    expect(resourcePath(kind, namespace, name)).toBe(path);
  });

  it("refuses a namespace for a cluster-scoped kind", () => {
    expect(() => resourcePath("BackupSet", "team-a")).toThrow(/cluster-scoped/);
  });
});

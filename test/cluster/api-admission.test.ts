import { describe, expect, it } from "vitest";
import { resourcePath } from "../../lib/api/index.ts";
import type { ResourceKind } from "../../lib/api/index.ts";
import { ApiError } from "../../lib/k8s/rest.ts";
import { admin, createNamespace } from "../support/kube.ts";
import { invalidCases, withinField } from "../unit/api-cases.ts";

// What the real kube-apiserver makes of Walle's CRDs: schema and CEL validation, immutability, and the printer
// columns `kubectl get` shows.

interface StatusCause {
  readonly field?: string;
  readonly message?: string;
}

/** The error a request failed with; fails the test if it succeeded. */
async function rejection(request: Promise<unknown>): Promise<ApiError> {
  const outcome = await request.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(outcome instanceof ApiError)) throw new Error(`expected the apiserver to refuse, got ${String(outcome)}`);
  return outcome;
}

/**
 * The causes of a rejection, without the note the apiserver adds when a schema error kept it from running the
 * CEL rules ("some validation rules were not checked because the object was invalid"), which names no field.
 */
function causesOf(error: ApiError): StatusCause[] {
  const causes = (error.details as { causes?: StatusCause[] } | undefined)?.causes ?? [];
  return causes.filter((cause) => !(cause.field === "<nil>" && /rules were not checked/.test(cause.message ?? "")));
}

function namespaceOf(object: Record<string, unknown>): string | undefined {
  return (object.metadata as { namespace?: string } | undefined)?.namespace;
}

describe("invalid objects are rejected with a message that names the field", () => {
  it.each(invalidCases)("$name → $field", async (testCase) => {
    // A dry run goes through all of admission and validation but stores nothing, so the namespace can be
    // `default` and a case that is wrongly accepted leaves nothing behind.
    const object = testCase.object("default");
    const error = await rejection(admin().create(resourcePath(testCase.kind, namespaceOf(object)), object, { dryRun: "All" }));

    expect(error.code).toBe(422);
    expect(error.reason).toBe("Invalid");
    expect(error.message).toContain(`${testCase.field}: `);
    const causes = causesOf(error);
    expect(causes).toContainEqual(expect.objectContaining({ field: testCase.field, message: expect.stringMatching(testCase.message) }));
    for (const cause of causes) expect(withinField(testCase.field, cause.field ?? ""), JSON.stringify(causes)).toBe(true);
  });
});

describe("a BackupJob or BackupRestore is immutable once created", () => {
  const objects: Record<"BackupJob" | "BackupRestore", (namespace: string) => Record<string, unknown>> = {
    BackupJob: (namespace) => ({
      apiVersion: "ros.io/v1",
      kind: "BackupJob",
      metadata: { name: "once", namespace },
      spec: { sourcePvc: "data", repository: { name: "restic-repo", namespace } },
    }),
    BackupRestore: (namespace) => ({
      apiVersion: "ros.io/v1",
      kind: "BackupRestore",
      metadata: { name: "once", namespace },
      spec: {
        repository: { name: "restic-repo", namespace },
        source: { latest: { pvc: "data" } },
        target: { existingPvc: "data" },
      },
    }),
  };
  const changes: Record<"BackupJob" | "BackupRestore", Record<string, unknown>> = {
    BackupJob: { sourcePvc: "other" },
    BackupRestore: { target: { existingPvc: "other" } },
  };

  it.each(["BackupJob", "BackupRestore"] as const)("%s: spec changes are refused, status and labels are not", async (kind) => {
    const namespace = await createNamespace("api-immutable");
    const path = resourcePath(kind, namespace, "once");
    await admin().create(resourcePath(kind, namespace), objects[kind](namespace));

    const error = await rejection(admin().patch(path, { spec: changes[kind] }));
    expect(error.code).toBe(422);
    expect(causesOf(error)).toContainEqual(expect.objectContaining({ field: "spec", message: expect.stringMatching(/spec is immutable/) }));

    await admin().patch(path, { metadata: { labels: { checked: "yes" } } });
    const status = await admin().patch<{ status: { phase: string } }>(`${path}/status`, { status: { phase: "NotStarted" } });
    expect(status.status.phase).toBe("NotStarted");
  });
});

interface Table {
  kind: "Table";
  columnDefinitions: { name: string; type: string; priority: number }[];
  rows: { cells: unknown[] }[];
}

const TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io";

/** The same Table `kubectl get` renders, for one object. */
async function tableOf(kind: ResourceKind, namespace: string | undefined, name: string): Promise<Table> {
  return admin().request<Table>("GET", resourcePath(kind, namespace), {
    accept: TABLE,
    query: { fieldSelector: `metadata.name=${name}`, includeObject: "None" },
  });
}

/** The row's cells by column name. */
function cellsByColumn(table: Table): Record<string, unknown> {
  const [row] = table.rows;
  if (row === undefined) throw new Error("the table has no row");
  return Object.fromEntries(table.columnDefinitions.map((column, i) => [column.name, row.cells[i]]));
}

interface ColumnCase {
  readonly kind: ResourceKind;
  readonly namespaced: boolean;
  readonly spec: (namespace: string) => Record<string, unknown>;
  readonly status: Record<string, unknown>;
  readonly columns: readonly string[];
  /** Cells to expect, by column name. */
  readonly cells: Record<string, unknown>;
}

const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");

const columnCases: readonly ColumnCase[] = [
  {
    kind: "BackupSchedule",
    namespaced: false,
    spec: () => ({ interval: "6h", plans: [{ type: "pod" }], repository: { name: "restic-repo" } }),
    status: { state: "Running", lastBackupRun: now, nextBackupRun: now },
    columns: ["Name", "Status", "Suspend", "LastBackup", "NextBackup", "Interval", "Schedule", "Age"],
    cells: { Status: "Running", Suspend: false, Interval: "6h" },
  },
  {
    kind: "BackupSet",
    namespaced: false,
    spec: () => ({ selector: { matchLabels: { "ros.io/backupset": "x" } } }),
    status: { state: "Running", completions: "3/4" },
    columns: ["Name", "Completions", "Status", "FinishTime", "Age"],
    cells: { Completions: "3/4", Status: "Running" },
  },
  {
    kind: "BackupJob",
    namespaced: true,
    spec: (namespace) => ({ sourcePvc: "data", repository: { name: "restic-repo", namespace } }),
    status: { phase: "BackingUp", progress: { percent: 42.5 }, snapshotId: "0123abcd" },
    columns: ["Name", "Status", "PVC", "Progress", "Snapshot", "Repository", "Age"],
    cells: { Status: "BackingUp", PVC: "data", Progress: 42.5, Snapshot: "0123abcd", Repository: "restic-repo" },
  },
  {
    kind: "BackupRestore",
    namespaced: true,
    spec: (namespace) => ({
      repository: { name: "restic-repo", namespace },
      source: { snapshotId: "0123abcd" },
      target: { newPvc: { name: "copy", size: "1Gi" } },
    }),
    status: { phase: "Restoring", progress: { percent: 10 }, snapshotId: "0123abcd" },
    columns: ["Name", "Status", "Progress", "Snapshot", "Repository", "Age"],
    cells: { Status: "Restoring", Progress: 10, Snapshot: "0123abcd" },
  },
];

describe("the Table output shows the printer columns", () => {
  it.each(columnCases)("$kind", async (testCase) => {
    const namespace = await createNamespace("api-columns");
    const scope = testCase.namespaced ? namespace : undefined;
    // Cluster-scoped names must not clash between runs; the namespace's random suffix serves.
    const name = testCase.namespaced ? "shown" : namespace;
    await admin().create(resourcePath(testCase.kind, scope), {
      apiVersion: "ros.io/v1",
      kind: testCase.kind,
      metadata: { name, namespace: scope },
      spec: testCase.spec(namespace),
    });
    try {
      await admin().patch(`${resourcePath(testCase.kind, scope, name)}/status`, { status: testCase.status });
      const table = await tableOf(testCase.kind, scope, name);
      expect(table.kind).toBe("Table");
      expect(table.columnDefinitions.map((column) => column.name)).toEqual(testCase.columns);
      expect(cellsByColumn(table)).toMatchObject({ Name: name, ...testCase.cells });
    } finally {
      if (!testCase.namespaced) await admin().delete(resourcePath(testCase.kind, undefined, name));
    }
  });

  it("`kubectl get walle` finds every kind through the category", async () => {
    const groups = await admin().get<{ resources: { name: string; categories?: string[]; shortNames?: string[] }[] }>("/apis/ros.io/v1");
    const inCategory = groups.resources.filter((r) => r.categories?.includes("walle"));
    expect(inCategory.map((r) => r.name).sort()).toEqual(["backupjobs", "backuprestores", "backupschedules", "backupsets"]);
    expect(Object.fromEntries(inCategory.map((r) => [r.name, r.shortNames]))).toEqual({
      backupjobs: ["backup-job"],
      backuprestores: ["backup-restore"],
      backupschedules: ["backup-schedule"],
      backupsets: ["backup-set"],
    });
  });
});

import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import {
  ApiParseError,
  backupScheduleSpecSchema,
  formatPath,
  mappedSnapshotClass,
  operatorConfigSchema,
  parseBackupJob,
  parseBackupRestore,
  parseBackupSchedule,
  parseResource,
  repositoryNamespace,
  safeParseResource,
} from "../../lib/api/index.ts";
import type { ResourceKind } from "../../lib/api/index.ts";
import { invalidCases, withinField } from "./api-cases.ts";

const EXAMPLES = resolve(import.meta.dirname, "../../examples");

function exampleDocuments(file: string): Record<string, unknown>[] {
  const text = readFileSync(join(EXAMPLES, file), "utf8");
  return parseAllDocuments(text).map((doc) => doc.toJS() as Record<string, unknown>);
}

/** The one ros.io object in an example file. */
function walleExample(file: string): Record<string, unknown> {
  const docs = exampleDocuments(file).filter((doc) => doc.apiVersion === "ros.io/v1");
  expect(docs).toHaveLength(1);
  return docs[0] as Record<string, unknown>;
}

describe("the original's examples parse unchanged, with the original's defaults", () => {
  it("backup-schedule.yml", () => {
    const schedule = parseBackupSchedule(walleExample("backup-schedule.yml"));
    expect(schedule.spec).toMatchObject({
      interval: "60s",
      keepSucceeded: 1,
      keepFailed: 3,
      suspend: false,
      plans: [
        {
          type: "pod",
          labelSelector: { matchLabels: { app: "test" } },
          fieldSelector: [{ field: "metadata.namespace", operator: "equals", value: "default" }],
        },
      ],
    });
    // The original example has a trailing space after the Secret's name; YAML drops it.
    expect(schedule.spec.repository).toEqual({ name: "restic-rest-config", namespace: "default" });
  });

  it("getting-started-schedule.yml (the README's)", () => {
    const schedule = parseBackupSchedule(walleExample("getting-started-schedule.yml"));
    expect(schedule.spec).toEqual({
      interval: "6h",
      plans: [{ type: "pod" }],
      repository: { name: "restic-repo", namespace: "walle" },
      keepSucceeded: 1,
      keepFailed: 3,
      suspend: false,
    });
  });

  it("backup-job.yml", () => {
    const job = parseBackupJob(walleExample("backup-job.yml"));
    expect(job.spec).toEqual({
      sourcePvc: "example-volume",
      repository: { name: "restic-rest-config", namespace: "default" },
    });
  });

  it("backup-schedule-prune-check.yml and backup-restore.yml (new)", () => {
    const schedule = parseBackupSchedule(walleExample("backup-schedule-prune-check.yml"));
    expect(schedule.spec).toMatchObject({ schedule: "30 2 * * *", timezone: "Europe/Berlin", keepSucceeded: 2 });
    expect(schedule.spec.prune?.retain).toEqual({ daily: 7, weekly: 4, monthly: 12, within: "2d" });
    const restore = parseBackupRestore(walleExample("backup-restore.yml"));
    expect(restore.spec.target.newPvc).toEqual({
      name: "example-volume-restored",
      storageClassName: "csi-hostpath-sc",
      size: "1Gi",
      accessModes: ["ReadWriteOnce"],
    });
  });

  it("config.yml and the Helm values.yml", () => {
    const config = operatorConfigSchema.parse(parseYaml(readFileSync(join(EXAMPLES, "config.yml"), "utf8")));
    expect(config).toEqual({
      backup_job_image: "ghcr.io/jess-sol/walle/worker:latest",
      cluster_name: "minikube",
      worker_service_account_name: "walle",
      snap_class_mappings: [{ storage_class: "csi-hostpath-sc", snapshot_class: "csi-hostpath-snapclass" }],
    });
    expect(mappedSnapshotClass(config, "csi-hostpath-sc")).toBe("csi-hostpath-snapclass");
    expect(mappedSnapshotClass(config, "standard")).toBeUndefined();

    const values = parseYaml(readFileSync(join(EXAMPLES, "values.yml"), "utf8")) as { config: unknown };
    expect(operatorConfigSchema.parse(values.config).cluster_name).toBe("minikube");
  });
});

describe("invalid objects are rejected at the field the apiserver names", () => {
  it.each(invalidCases)("$name → $field", (testCase) => {
    const result = safeParseResource(testCase.kind, testCase.object("tenant-a"));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const issues = result.error.issues;
    expect(issues.map((issue) => issue.field)).toContain(testCase.field);
    for (const issue of issues) expect(withinField(testCase.field, issue.field)).toBe(true);
    if (testCase.schemaCheck === undefined) {
      expect(issues.filter((issue) => issue.field === testCase.field).map((issue) => issue.message)).toEqual(
        expect.arrayContaining([expect.stringMatching(testCase.message)]),
      );
    }
  });

  it("has at least 30 cases", () => {
    expect(invalidCases.length).toBeGreaterThanOrEqual(30);
  });
});

function scheduleWith(change: Record<string, unknown>): ReturnType<typeof backupScheduleSpecSchema.safeParse> {
  return backupScheduleSpecSchema.safeParse({
    plans: [{ type: "pod" }],
    repository: { name: "repo" },
    ...change,
  });
}

describe("valid values are accepted", () => {
  it.each(["6h", "1h30m", "90s", "2w", "1d12h", "60s"])("interval %s", (interval) => {
    expect(scheduleWith({ interval }).success).toBe(true);
  });

  it.each([
    "*/15 * * * *",
    "0 3 * * MON-FRI",
    "0 0 1,15 jan,Jul ?",
    "30 2 * * 0",
    "0 */6 * * 7",
    "5-10/2 0-23/4 1-31 1-12 0-7",
    "  0   3 * * *  ",
    "@daily",
    "@midnight",
  ])("schedule %j", (schedule) => {
    expect(scheduleWith({ schedule }).success).toBe(true);
  });

  it.each(["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "America/Port-au-Prince"])("timezone %s", (timezone) => {
    expect(scheduleWith({ schedule: "@daily", timezone }).success).toBe(true);
  });

  it.each(["10Gi", "500M", "1.5Ti", "1e9", "0.5Gi"])("restore size %s", (size) => {
    const restore = {
      apiVersion: "ros.io/v1",
      kind: "BackupRestore",
      metadata: { name: "r", namespace: "a" },
      spec: {
        repository: { name: "repo" },
        source: { snapshotId: "0123abcd" },
        target: { newPvc: { name: "copy", size } },
      },
    };
    expect(safeParseResource("BackupRestore", restore).ok).toBe(true);
  });
});

describe("parse helpers", () => {
  const object = (kind: ResourceKind, spec: unknown) => ({ apiVersion: "ros.io/v1", kind, metadata: { name: "x" }, spec });

  it("apply defaults once, and keep metadata they do not know", () => {
    const raw = {
      ...object("BackupSchedule", { interval: "1h", plans: [{ type: "pod" }], repository: { name: "repo" } }),
      metadata: { name: "x", managedFields: [{ manager: "kubectl" }] },
    };
    const schedule = parseResource("BackupSchedule", raw);
    expect(schedule.spec.keepSucceeded).toBe(1);
    expect(schedule.spec.keepFailed).toBe(3);
    expect(schedule.metadata.managedFields).toEqual([{ manager: "kubectl" }]);
  });

  it("drop unknown spec fields, as the apiserver prunes them", () => {
    const job = parseBackupJob(object("BackupJob", { sourcePvc: "data", repository: { name: "repo" }, surprise: 1 }));
    expect(job.spec).not.toHaveProperty("surprise");
  });

  it("throw ApiParseError naming every field", () => {
    const bad = object("BackupSchedule", { interval: "6x", plans: [], repository: { name: "repo" } });
    expect(() => parseBackupSchedule(bad)).toThrowError(ApiParseError);
    expect(() => parseBackupSchedule(bad)).toThrowError(/spec\.interval: interval must be digits.*spec\.plans:/);
  });

  it("reject another kind or API version", () => {
    expect(safeParseResource("BackupJob", { ...object("BackupSet", {}), kind: "BackupSet" }).ok).toBe(false);
    const other = { ...object("BackupJob", { sourcePvc: "a", repository: { name: "r" } }), apiVersion: "ros.io/v2" };
    expect(safeParseResource("BackupJob", other).ok).toBe(false);
  });

  it("resolve a repository without a namespace to the install namespace", () => {
    expect(repositoryNamespace({ name: "repo" })).toBe("walle-system");
    expect(repositoryNamespace({ name: "repo", namespace: "team-a" })).toBe("team-a");
  });

  it.each([
    [["spec", "plans", 0, "type"], "spec.plans[0].type"],
    [["spec"], "spec"],
    [[], ""],
    [["spec", "plans", 2, "fieldSelector", 0], "spec.plans[2].fieldSelector[0]"],
  ] as const)("formatPath(%j) is %j", (path, expected) => {
    expect(formatPath(path)).toBe(expected);
  });
});

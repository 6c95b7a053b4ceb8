// Which PVCs a schedule's plans select, from the lists a tick reads once: pods by label, namespace and field
// (equals/doesNotEqual with the API server's field semantics), PVCs by label and namespace; first plan wins;
// Walle's own PVCs and unbound ones skipped with the reason.
import { describe, expect, it } from "vitest";
import type { BackupPlan } from "../../lib/api/backup-schedule.ts";
import { indexInventory, matchesLabels, selectPvcs as selectFrom, type Inventory } from "../../lib/core/plans.ts";
import type { Pod, Pvc } from "../../lib/core/objects.ts";

const pvc = (namespace: string, name: string, phase = "Bound", labels: Record<string, string> = {}): Pvc => ({
  metadata: { namespace, name, labels },
  spec: {},
  status: { phase },
});
const pod = (namespace: string, name: string, labels: Record<string, string>, claims: string[], extra: { phase?: string; nodeName?: string } = {}): Pod => ({
  metadata: { namespace, name, labels },
  spec: {
    containers: [],
    volumes: [...claims.map((c) => ({ name: c, persistentVolumeClaim: { claimName: c } })), { name: "scratch" }],
    ...(extra.nodeName ? { nodeName: extra.nodeName } : {}),
  },
  status: { phase: extra.phase ?? "Running" },
});

const inventory: Inventory = {
  pvcs: [
    pvc("default", "example-volume"),
    pvc("default", "logs"),
    pvc("shop", "db", "Bound", { tier: "gold" }),
    pvc("shop", "cache", "Pending"),
    pvc("walle", "walle-default-x-123456", "Bound", { "app.kubernetes.io/created-by": "walle" }),
    pvc("lab", "scratch", "Bound", { tier: "gold" }),
  ],
  pods: [
    pod("default", "test-1", { app: "test" }, ["example-volume"]),
    pod("default", "other", { app: "other" }, ["logs"], { phase: "Succeeded" }),
    pod("shop", "db-0", { app: "db" }, ["db", "cache", "gone"], { nodeName: "node-1" }),
    pod("walle", "walle-backup-x", { app: "test", "app.kubernetes.io/created-by": "walle" }, ["walle-default-x-123456"]),
  ],
  namespaces: [
    { metadata: { name: "default", labels: {} } },
    { metadata: { name: "shop", labels: { backup: "nightly" } } },
    { metadata: { name: "lab", labels: {} } },
  ],
};

const selectPvcs = (plans: Parameters<typeof selectFrom>[0], inv: Inventory) => selectFrom(plans, indexInventory(inv));
const names = (s: ReturnType<typeof selectPvcs>) => s.targets.map((t) => `${t.namespace}/${t.pvc}#${t.plan}`);

describe("selectPvcs", () => {
  it("the getting-started plan (every pod) backs up every PVC a pod mounts, skipping Walle's and unbound ones with the reason", () => {
    const s = selectPvcs([{ type: "pod" }], inventory);
    expect(names(s)).toEqual(["default/example-volume#0", "default/logs#0", "shop/db#0"]);
    expect(s.skipped).toEqual([
      { namespace: "shop", pvc: "cache", reason: "the PVC is Pending, not Bound" },
      { namespace: "shop", pvc: "gone", reason: "the PVC was not found" },
    ]);
  });

  it("the original example: label app=test and metadata.namespace equals default", () => {
    const plan: BackupPlan = {
      type: "pod",
      labelSelector: { matchLabels: { app: "test" } },
      fieldSelector: [{ field: "metadata.namespace", operator: "equals", value: "default" }],
    };
    expect(names(selectPvcs([plan], inventory))).toEqual(["default/example-volume#0"]);
  });

  it.each([
    [[{ field: "status.phase", operator: "doesNotEqual", value: "Succeeded" }], ["default/example-volume#0", "shop/db#0"]],
    [[{ field: "spec.nodeName", operator: "equals", value: "node-1" }], ["shop/db#0"]],
    // An unset field is the empty string, as the API server compares it.
    [[{ field: "spec.nodeName", operator: "equals", value: "" }], ["default/example-volume#0", "default/logs#0"]],
  ] as const)("pod field selector %j", (fieldSelector, expected) => {
    expect(names(selectPvcs([{ type: "pod", fieldSelector: [...fieldSelector] }], inventory))).toEqual(expected);
  });

  it("refuses a field the API server has no selector for, naming it and the supported ones; nothing is selected", () => {
    const s = selectPvcs(
      [{ type: "pod" }, { type: "persistentVolumeClaim", fieldSelector: [{ field: "spec.storageClassName", operator: "equals", value: "fast" }] }],
      inventory,
    );
    expect(s.targets).toEqual([]);
    expect(s.errors).toEqual([
      expect.stringMatching(
        /^plans\[1\]\.fieldSelector: field "spec.storageClassName" is not a field selector of persistentvolumeclaims; supported: metadata.name, metadata.namespace$/,
      ),
    ]);
  });

  it("PVC plans by label and namespace selector; the first plan that selects a PVC wins", () => {
    const plans: BackupPlan[] = [
      { type: "persistentVolumeClaim", namespaceSelector: { matchLabels: { backup: "nightly" } }, labelSelector: { matchLabels: { tier: "gold" } } },
      { type: "pod", labelSelector: { matchExpressions: [{ key: "app", operator: "In", values: ["db", "test"] }] } },
    ];
    expect(names(selectPvcs(plans, inventory))).toEqual(["default/example-volume#1", "shop/db#0"]);
  });
});

describe("matchesLabels", () => {
  it.each([
    [{}, {}, true],
    [{ matchLabels: { a: "1" } }, { a: "1", b: "2" }, true],
    [{ matchLabels: { a: "1" } }, { a: "2" }, false],
    [{ matchExpressions: [{ key: "a", operator: "NotIn", values: ["1"] }] }, {}, true],
    [{ matchExpressions: [{ key: "a", operator: "Exists" }] }, { a: "" }, true],
    [{ matchExpressions: [{ key: "a", operator: "DoesNotExist" }] }, { a: "" }, false],
    [{ matchExpressions: [{ key: "a", operator: "In", values: ["1", "2"] }] }, { a: "2" }, true],
  ] as const)("%j on %j is %s", (selector, labels, expected) => {
    expect(matchesLabels(selector as never, labels)).toBe(expected);
  });
});

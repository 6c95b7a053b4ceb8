// Which PVCs a schedule's plans select, from lists read once per tick. A `pod` plan selects pods by label,
// namespace and field, then the PVCs in their volumes, as the original did; a `persistentVolumeClaim` plan
// selects PVCs themselves. The first plan that selects a PVC wins. Selectors are evaluated as the API server
// evaluates them (labels.Selector and field selectors, with the fields each kind supports), so a tick costs one
// read per kind however many schedules come due. PVCs Walle made, and PVCs that are not Bound, are skipped with
// the reason.
import type { LabelSelector } from "../api/common.ts";
import { CREATED_BY, Label } from "../api/constants.ts";
import { FieldOperator, PlanType, type BackupPlan } from "../api/backup-schedule.ts";
import type { Pod, Pvc } from "./objects.ts";

export interface NamespaceInfo {
  readonly metadata: { readonly name?: string; readonly labels?: Readonly<Record<string, string>> };
}

/** What a tick read: every pod, PVC and namespace, each only when some due plan needs it. */
export interface Inventory {
  readonly pods?: readonly Pod[];
  readonly pvcs: readonly Pvc[];
  readonly namespaces?: readonly NamespaceInfo[];
}

export interface Target {
  readonly namespace: string;
  readonly pvc: string;
  /** The index of the plan that selected it. */
  readonly plan: number;
}

export interface Skipped {
  readonly namespace: string;
  readonly pvc: string;
  readonly reason: string;
}

export interface Selection {
  readonly targets: readonly Target[];
  readonly skipped: readonly Skipped[];
  /** Plans that cannot be evaluated (a field no selector of that kind supports); nothing is selected then. */
  readonly errors: readonly string[];
}

/** Whether a set of labels matches a selector, as labels.Selector does; an absent or empty selector matches all. */
export function matchesLabels(selector: LabelSelector | undefined, labels: Readonly<Record<string, string>> | undefined): boolean {
  const l = labels ?? {};
  const required = selector?.matchLabels;
  if (required) for (const k in required) if (l[k] !== required[k]) return false;
  for (const e of selector?.matchExpressions ?? []) {
    const has = Object.hasOwn(l, e.key);
    const value = l[e.key];
    switch (e.operator) {
      case "In":
        if (!has || !(e.values ?? []).includes(value ?? "")) return false;
        break;
      case "NotIn":
        if (has && (e.values ?? []).includes(value ?? "")) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
      default: {
        const never: never = e.operator;
        throw new Error(`unknown label selector operator ${String(never)}`);
      }
    }
  }
  return true;
}

type Fields = (o: Record<string, unknown>) => Record<string, string>;
const str = (v: unknown): string => (v === undefined || v === null ? "" : String(v));
const at = (o: Record<string, unknown>, ...path: string[]): unknown =>
  path.reduce<unknown>((v, k) => (v && typeof v === "object" ? (v as Record<string, unknown>)[k] : undefined), o);

/** The fields the API server's field selectors support, per kind (pkg/registry/core/{pod,persistentvolumeclaim}). */
const FIELDS: Record<PlanType, Fields> = {
  [PlanType.Pod]: (p) => ({
    "metadata.name": str(at(p, "metadata", "name")),
    "metadata.namespace": str(at(p, "metadata", "namespace")),
    "spec.nodeName": str(at(p, "spec", "nodeName")),
    "spec.restartPolicy": str(at(p, "spec", "restartPolicy")),
    "spec.schedulerName": str(at(p, "spec", "schedulerName")),
    "spec.serviceAccountName": str(at(p, "spec", "serviceAccountName")),
    "spec.hostNetwork": String(at(p, "spec", "hostNetwork") === true),
    "status.phase": str(at(p, "status", "phase")),
    "status.podIP": str(at(p, "status", "podIP")),
    "status.nominatedNodeName": str(at(p, "status", "nominatedNodeName")),
  }),
  [PlanType.PersistentVolumeClaim]: (c) => ({
    "metadata.name": str(at(c, "metadata", "name")),
    "metadata.namespace": str(at(c, "metadata", "namespace")),
  }),
};

const KIND_NAME: Record<PlanType, string> = { [PlanType.Pod]: "pods", [PlanType.PersistentVolumeClaim]: "persistentvolumeclaims" };

/** An unsupported field, as the API server would refuse it; undefined when every field is supported. */
function fieldError(plan: BackupPlan, index: number): string | undefined {
  const supported = Object.keys(FIELDS[plan.type]({}));
  const bad = (plan.fieldSelector ?? []).find((f) => !supported.includes(f.field));
  return bad
    ? `plans[${index}].fieldSelector: field ${JSON.stringify(bad.field)} is not a field selector of ${KIND_NAME[plan.type]}; supported: ${supported.join(", ")}`
    : undefined;
}

function matchesFields(plan: BackupPlan, object: object): boolean {
  if (!plan.fieldSelector?.length) return true;
  const fields = FIELDS[plan.type](object as Record<string, unknown>);
  return plan.fieldSelector.every((f) => (fields[f.field] === f.value) === (f.operator === FieldOperator.Equals));
}

const madeByWalle = (labels: Readonly<Record<string, string>> | undefined) => labels?.[Label.CreatedBy] === CREATED_BY;

/**
 * The inventory indexed once per tick, by namespace and by label, so each due plan looks only at the objects
 * that can match it, not all of them (bench/tick.ts measures 10,000 schedules over 100,000 PVCs).
 */
export interface InventoryIndex {
  readonly pods: readonly Pod[];
  readonly pvcs: readonly Pvc[];
  readonly pvcByKey: ReadonlyMap<string, Pvc>;
  readonly nsLabels: ReadonlyMap<string, Readonly<Record<string, string>>>;
  /** Namespaces by `key=value` of their labels. */
  readonly nsByLabel: ReadonlyMap<string, readonly NamespaceInfo[]>;
  readonly byNamespace: { readonly [T in PlanType]: ReadonlyMap<string, readonly object[]> };
  readonly byLabel: { readonly [T in PlanType]: ReadonlyMap<string, readonly object[]> };
  /** By namespace and one `key=value` label together: the usual plan names both. */
  readonly byNamespaceLabel: { readonly [T in PlanType]: ReadonlyMap<string, readonly object[]> };
}

const nsLabelKey = (ns: string, label: string) => `${ns}\u0000${label}`;

/** Adds `value` to the list under `key`. */
export function addTo<T>(map: Map<string, T[]>, key: string, value: T): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function group<T extends { metadata?: { namespace?: string; labels?: Readonly<Record<string, string>> } }>(items: readonly T[]) {
  const byNamespace = new Map<string, T[]>();
  const byLabel = new Map<string, T[]>();
  const byNamespaceLabel = new Map<string, T[]>();
  for (const item of items) {
    const ns = item.metadata?.namespace ?? "";
    addTo(byNamespace, ns, item);
    const labels = item.metadata?.labels;
    if (!labels) continue;
    for (const k in labels) {
      const label = `${k}=${labels[k]}`;
      addTo(byLabel, label, item);
      addTo(byNamespaceLabel, nsLabelKey(ns, label), item);
    }
  }
  return { byNamespace, byLabel, byNamespaceLabel };
}

export function indexInventory(inventory: Inventory): InventoryIndex {
  const pods = inventory.pods ?? [];
  const p = group(pods);
  const c = group(inventory.pvcs);
  return {
    pods,
    pvcs: inventory.pvcs,
    pvcByKey: new Map(inventory.pvcs.map((x) => [`${x.metadata?.namespace ?? ""}/${x.metadata?.name ?? ""}`, x])),
    nsLabels: new Map((inventory.namespaces ?? []).map((n) => [n.metadata.name ?? "", n.metadata.labels ?? {}])),
    nsByLabel: group(inventory.namespaces ?? []).byLabel,
    byNamespace: { [PlanType.Pod]: p.byNamespace, [PlanType.PersistentVolumeClaim]: c.byNamespace },
    byLabel: { [PlanType.Pod]: p.byLabel, [PlanType.PersistentVolumeClaim]: c.byLabel },
    byNamespaceLabel: { [PlanType.Pod]: p.byNamespaceLabel, [PlanType.PersistentVolumeClaim]: c.byNamespaceLabel },
  };
}

/** The objects of a plan's kind that can match it: the smallest of what its namespace and its labels allow. */
function candidates(plan: BackupPlan, index: InventoryIndex): readonly object[] {
  const all: readonly object[] = plan.type === PlanType.Pod ? index.pods : index.pvcs;
  const options: (readonly object[])[] = [all];
  const labels = Object.entries(plan.labelSelector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  // Every field selector must hold, so one namespace named by `equals` bounds them all.
  const named = plan.fieldSelector?.find((f) => f.field === "metadata.namespace" && f.operator === FieldOperator.Equals)?.value;
  let namespaces: readonly string[] | undefined = named === undefined ? undefined : [named];
  if (namespaces === undefined && plan.namespaceSelector) {
    const [first] = Object.entries(plan.namespaceSelector.matchLabels ?? {});
    const names = first ? (index.nsByLabel.get(`${first[0]}=${first[1]}`) ?? []).map((n) => n.metadata.name ?? "") : [...index.nsLabels.keys()];
    namespaces = names.filter((ns) => matchesLabels(plan.namespaceSelector, index.nsLabels.get(ns)));
  }
  if (namespaces) {
    const label = labels[0];
    options.push(
      label === undefined
        ? namespaces.flatMap((ns) => index.byNamespace[plan.type].get(ns) ?? [])
        : namespaces.flatMap((ns) => index.byNamespaceLabel[plan.type].get(nsLabelKey(ns, label)) ?? []),
    );
  }
  for (const label of labels) options.push(index.byLabel[plan.type].get(label) ?? []);
  return options.reduce((a, b) => (b.length < a.length ? b : a));
}

/** The PVCs the plans select, in the order the plans name them, each once. */
export function selectPvcs(plans: readonly BackupPlan[], index: InventoryIndex): Selection {
  const errors = plans.map(fieldError).filter((e): e is string => e !== undefined);
  if (errors.length > 0) return { targets: [], skipped: [], errors };

  const pvcs = index.pvcByKey;
  const nsLabels = index.nsLabels;
  const inNamespace = (plan: BackupPlan, ns: string) =>
    !plan.namespaceSelector || (nsLabels.has(ns) && matchesLabels(plan.namespaceSelector, nsLabels.get(ns)));

  const chosen = new Map<string, Target>();
  const skipped = new Map<string, Skipped>();
  const consider = (namespace: string, name: string, plan: number) => {
    const key = `${namespace}/${name}`;
    if (chosen.has(key) || skipped.has(key)) return;
    const pvc = pvcs.get(key);
    const reason = !pvc
      ? "the PVC was not found"
      : madeByWalle(pvc.metadata?.labels)
        ? "Walle made this PVC itself"
        : pvc.metadata?.deletionTimestamp
          ? "the PVC is being deleted"
          : pvc.status?.phase !== "Bound"
            ? `the PVC is ${pvc.status?.phase ?? "Pending"}, not Bound`
            : undefined;
    if (reason) skipped.set(key, { namespace, pvc: name, reason });
    else chosen.set(key, { namespace, pvc: name, plan });
  };

  plans.forEach((plan, planIndex) => {
    const objects = candidates(plan, index);
    if (plan.type === PlanType.Pod) {
      for (const pod of objects as readonly Pod[]) {
        const ns = pod.metadata?.namespace ?? "";
        // The original left Walle's own pods (its workers) out of every plan; a pod being deleted is going away.
        if (madeByWalle(pod.metadata?.labels) || pod.metadata?.deletionTimestamp || !matchesLabels(plan.labelSelector, pod.metadata?.labels)) continue;
        if (!inNamespace(plan, ns) || !matchesFields(plan, pod)) continue;
        for (const v of pod.spec?.volumes ?? []) if (v.persistentVolumeClaim) consider(ns, v.persistentVolumeClaim.claimName, planIndex);
      }
    } else {
      for (const pvc of objects as readonly Pvc[]) {
        const ns = pvc.metadata?.namespace ?? "";
        if (!matchesLabels(plan.labelSelector, pvc.metadata?.labels) || !inNamespace(plan, ns) || !matchesFields(plan, pvc)) continue;
        consider(ns, pvc.metadata?.name ?? "", planIndex);
      }
    }
  });
  const order = (a: { namespace: string; pvc: string }, b: { namespace: string; pvc: string }) =>
    a.namespace.localeCompare(b.namespace) || a.pvc.localeCompare(b.pvc);
  return { targets: [...chosen.values()].sort(order), skipped: [...skipped.values()].sort(order), errors: [] };
}

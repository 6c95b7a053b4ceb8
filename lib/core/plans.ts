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
  for (const [k, v] of Object.entries(selector?.matchLabels ?? {})) if (l[k] !== v) return false;
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
const at = (o: Record<string, unknown>, ...path: string[]): unknown => path.reduce<unknown>((v, k) => (v && typeof v === "object" ? (v as Record<string, unknown>)[k] : undefined), o);

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

/** The PVCs the plans select, in the order the plans name them, each once. */
export function selectPvcs(plans: readonly BackupPlan[], inventory: Inventory): Selection {
  const errors = plans.map(fieldError).filter((e): e is string => e !== undefined);
  if (errors.length > 0) return { targets: [], skipped: [], errors };

  const pvcs = new Map(inventory.pvcs.map((c) => [`${c.metadata?.namespace ?? ""}/${c.metadata?.name ?? ""}`, c]));
  const nsLabels = new Map((inventory.namespaces ?? []).map((n) => [n.metadata.name ?? "", n.metadata.labels ?? {}]));
  const inNamespace = (plan: BackupPlan, ns: string) => !plan.namespaceSelector || (nsLabels.has(ns) && matchesLabels(plan.namespaceSelector, nsLabels.get(ns)));

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
        : pvc.status?.phase !== "Bound"
          ? `the PVC is ${pvc.status?.phase ?? "Pending"}, not Bound`
          : undefined;
    if (reason) skipped.set(key, { namespace, pvc: name, reason });
    else chosen.set(key, { namespace, pvc: name, plan });
  };

  plans.forEach((plan, index) => {
    if (plan.type === PlanType.Pod) {
      for (const pod of inventory.pods ?? []) {
        const ns = pod.metadata?.namespace ?? "";
        // The original left Walle's own pods (its workers) out of every plan.
        if (madeByWalle(pod.metadata?.labels) || !matchesLabels(plan.labelSelector, pod.metadata?.labels)) continue;
        if (!inNamespace(plan, ns) || !matchesFields(plan, pod)) continue;
        for (const v of pod.spec?.volumes ?? []) if (v.persistentVolumeClaim) consider(ns, v.persistentVolumeClaim.claimName, index);
      }
    } else {
      for (const pvc of inventory.pvcs) {
        const ns = pvc.metadata?.namespace ?? "";
        if (!matchesLabels(plan.labelSelector, pvc.metadata?.labels) || !inNamespace(plan, ns) || !matchesFields(plan, pvc)) continue;
        consider(ns, pvc.metadata?.name ?? "", index);
      }
    }
  });
  const order = (a: { namespace: string; pvc: string }, b: { namespace: string; pvc: string }) => a.namespace.localeCompare(b.namespace) || a.pvc.localeCompare(b.pvc);
  return { targets: [...chosen.values()].sort(order), skipped: [...skipped.values()].sort(order), errors: [] };
}

import type { ResourceKind } from "../../lib/api/index.ts";

// Invalid objects, each wrong in one way, with the field the kube-apiserver names and the reason it gives. The
// unit tests run them through the zod schemas; the cluster tests send them to a real kube-apiserver.

export interface InvalidCase {
  readonly name: string;
  readonly kind: ResourceKind;
  /** The object, for a namespaced kind placed in `namespace` (with its repository there too). */
  readonly object: (namespace: string) => Record<string, unknown>;
  /** The field as the apiserver reports it (`spec.plans[0].type`). */
  readonly field: string;
  /** Matches the apiserver's message for the field; for CEL rules also zod's, which shares the words. */
  readonly message: RegExp;
  /** An OpenAPI schema check (type, enum, required, bounds): zod words those its own way. */
  readonly schemaCheck?: true;
}

type Spec = Record<string, unknown>;

const scheduleSpec: Spec = {
  interval: "6h",
  plans: [{ type: "pod" }],
  repository: { name: "restic-repo", namespace: "walle" },
};

function schedule(change: Spec): (namespace: string) => Record<string, unknown> {
  return () => ({
    apiVersion: "ros.io/v1",
    kind: "BackupSchedule",
    metadata: { name: "invalid-schedule" },
    spec: dropUndefined({ ...scheduleSpec, ...change }),
  });
}

/** A plan-level change: the first plan is `{type: pod, ...change}`. */
function plan(change: Spec): (namespace: string) => Record<string, unknown> {
  return schedule({ plans: [{ type: "pod", ...change }] });
}

function namespaced(kind: ResourceKind, spec: (namespace: string) => Spec) {
  return (namespace: string) => ({
    apiVersion: "ros.io/v1",
    kind,
    metadata: { name: `invalid-${kind.toLowerCase()}`, namespace },
    spec: dropUndefined(spec(namespace)),
  });
}

function job(change: Spec) {
  return namespaced("BackupJob", (namespace) => ({
    sourcePvc: "data",
    repository: { name: "restic-repo", namespace },
    ...change,
  }));
}

function restore(change: Spec) {
  return namespaced("BackupRestore", (namespace) => ({
    repository: { name: "restic-repo", namespace },
    source: { latest: { pvc: "data" } },
    target: { existingPvc: "data" },
    ...change,
  }));
}

/** A key set to undefined means "leave it out", so a case can remove a field of the base object. */
function dropUndefined(spec: Spec): Spec {
  return Object.fromEntries(Object.entries(spec).filter(([, value]) => value !== undefined));
}

const INTERVAL_SYNTAX = /interval must be digits followed by a unit \(s, m, h, d or w\)/;
const CRON_SHAPE = /schedule must be a cron expression with 5 fields/;

export const invalidCases: readonly InvalidCase[] = [
  // BackupSchedule: when
  { name: "interval 6x", kind: "BackupSchedule", object: schedule({ interval: "6x" }), field: "spec.interval", message: INTERVAL_SYNTAX },
  { name: "interval -1h", kind: "BackupSchedule", object: schedule({ interval: "-1h" }), field: "spec.interval", message: INTERVAL_SYNTAX },
  { name: 'interval ""', kind: "BackupSchedule", object: schedule({ interval: "" }), field: "spec.interval", message: INTERVAL_SYNTAX },
  { name: "interval without unit", kind: "BackupSchedule", object: schedule({ interval: "6" }), field: "spec.interval", message: INTERVAL_SYNTAX },
  { name: "interval 0h", kind: "BackupSchedule", object: schedule({ interval: "0h" }), field: "spec.interval", message: /interval must be greater than zero/ },
  {
    name: "both interval and schedule",
    kind: "BackupSchedule",
    object: schedule({ schedule: "0 3 * * *" }),
    field: "spec",
    message: /exactly one of interval and schedule must be set/,
  },
  {
    name: "neither interval nor schedule",
    kind: "BackupSchedule",
    object: schedule({ interval: undefined }),
    field: "spec",
    message: /exactly one of interval and schedule must be set/,
  },
  {
    name: "cron with 4 fields",
    kind: "BackupSchedule",
    object: schedule({ interval: undefined, schedule: "0 3 * *" }),
    field: "spec.schedule",
    message: CRON_SHAPE,
  },
  {
    name: "cron with 6 fields",
    kind: "BackupSchedule",
    object: schedule({ interval: undefined, schedule: "0 0 3 * * *" }),
    field: "spec.schedule",
    message: CRON_SHAPE,
  },
  {
    name: "cron @every",
    kind: "BackupSchedule",
    object: schedule({ interval: undefined, schedule: "@every 5m" }),
    field: "spec.schedule",
    message: CRON_SHAPE,
  },
  {
    name: "cron minute 61",
    kind: "BackupSchedule",
    object: schedule({ interval: undefined, schedule: "61 * * * *" }),
    field: "spec.schedule",
    message: /minute field .* 0-59/,
  },
  {
    name: "cron hour 24",
    kind: "BackupSchedule",
    object: schedule({ interval: undefined, schedule: "0 24 * * *" }),
    field: "spec.schedule",
    message: /hour field .* 0-23/,
  },
  {
    name: "cron day 32",
    kind: "BackupSchedule",
    object: schedule({ interval: undefined, schedule: "0 0 32 * *" }),
    field: "spec.schedule",
    message: /day-of-month field .* 1-31/,
  },
  {
    name: "cron month 13",
    kind: "BackupSchedule",
    object: schedule({ interval: undefined, schedule: "0 0 1 13 *" }),
    field: "spec.schedule",
    message: /month field .* 1-12/,
  },
  {
    name: "cron weekday FUN",
    kind: "BackupSchedule",
    object: schedule({ interval: undefined, schedule: "0 0 * * FUN" }),
    field: "spec.schedule",
    message: /day-of-week field .* 0-7/,
  },
  {
    name: "cron step /0",
    kind: "BackupSchedule",
    object: schedule({ interval: undefined, schedule: "*/0 * * * *" }),
    field: "spec.schedule",
    message: /minute field/,
  },
  {
    name: "timezone with a space",
    kind: "BackupSchedule",
    object: schedule({ interval: undefined, schedule: "0 3 * * *", timezone: "Europe Berlin" }),
    field: "spec.timezone",
    message: /timezone must be an IANA time zone name/,
  },
  {
    name: "timezone without schedule",
    kind: "BackupSchedule",
    object: schedule({ timezone: "Europe/Berlin" }),
    field: "spec.timezone",
    message: /timezone may only be set together with schedule/,
  },
  // BackupSchedule: what
  { name: "empty plans", kind: "BackupSchedule", object: schedule({ plans: [] }), field: "spec.plans", message: /at least 1 items/, schemaCheck: true },
  { name: "missing plans", kind: "BackupSchedule", object: schedule({ plans: undefined }), field: "spec.plans", message: /Required value/, schemaCheck: true },
  {
    name: "unknown plan type",
    kind: "BackupSchedule",
    object: plan({ type: "deployment" }),
    field: "spec.plans[0].type",
    message: /Unsupported value: "deployment"/,
    schemaCheck: true,
  },
  {
    name: "unknown field-selector operator",
    kind: "BackupSchedule",
    object: plan({ fieldSelector: [{ field: "metadata.namespace", operator: "contains", value: "default" }] }),
    field: "spec.plans[0].fieldSelector[0].operator",
    message: /Unsupported value: "contains"/,
    schemaCheck: true,
  },
  {
    name: "unknown label-selector operator",
    kind: "BackupSchedule",
    object: plan({ labelSelector: { matchExpressions: [{ key: "app", operator: "Equals", values: ["a"] }] } }),
    field: "spec.plans[0].labelSelector.matchExpressions[0].operator",
    message: /Unsupported value: "Equals"/,
    schemaCheck: true,
  },
  {
    name: "label-selector In without values",
    kind: "BackupSchedule",
    object: plan({ labelSelector: { matchExpressions: [{ key: "app", operator: "In" }] } }),
    field: "spec.plans[0].labelSelector.matchExpressions[0]",
    message: /values must be non-empty for the In and NotIn operators/,
  },
  {
    name: "namespace-selector Exists with values",
    kind: "BackupSchedule",
    object: plan({ namespaceSelector: { matchExpressions: [{ key: "team", operator: "Exists", values: ["a"] }] } }),
    field: "spec.plans[0].namespaceSelector.matchExpressions[0]",
    message: /empty for Exists and DoesNotExist/,
  },
  // BackupSchedule: how many and where
  {
    name: "negative keepSucceeded",
    kind: "BackupSchedule",
    object: schedule({ keepSucceeded: -1 }),
    field: "spec.keepSucceeded",
    message: /greater than or equal to 0/,
    schemaCheck: true,
  },
  {
    name: "negative keepFailed",
    kind: "BackupSchedule",
    object: schedule({ keepFailed: -3 }),
    field: "spec.keepFailed",
    message: /greater than or equal to 0/,
    schemaCheck: true,
  },
  {
    name: "keepFailed not a number",
    kind: "BackupSchedule",
    object: schedule({ keepFailed: "three" }),
    field: "spec.keepFailed",
    message: /must be of type integer/,
    schemaCheck: true,
  },
  {
    name: "missing repository",
    kind: "BackupSchedule",
    object: schedule({ repository: undefined }),
    field: "spec.repository",
    message: /Required value/,
    schemaCheck: true,
  },
  {
    name: "repository without name",
    kind: "BackupSchedule",
    object: schedule({ repository: { namespace: "walle" } }),
    field: "spec.repository.name",
    message: /Required value/,
    schemaCheck: true,
  },
  {
    name: 'repository name ""',
    kind: "BackupSchedule",
    object: schedule({ repository: { name: "" } }),
    field: "spec.repository.name",
    message: /name must be a lowercase RFC 1123 name/,
  },
  {
    name: "repository namespace not a label",
    kind: "BackupSchedule",
    object: schedule({ repository: { name: "restic-repo", namespace: "Team_A" } }),
    field: "spec.repository.namespace",
    message: /namespace must be a lowercase RFC 1123 label/,
  },
  // BackupSchedule: maintenance
  {
    name: "prune interval 1x",
    kind: "BackupSchedule",
    object: schedule({ prune: { interval: "1x", retain: { daily: 7 } } }),
    field: "spec.prune.interval",
    message: INTERVAL_SYNTAX,
  },
  {
    name: "prune without retention",
    kind: "BackupSchedule",
    object: schedule({ prune: { interval: "1d", retain: {} } }),
    field: "spec.prune.retain",
    message: /retain must set at least one of last, hourly, daily, weekly, monthly, yearly, within/,
  },
  {
    name: "negative retain daily",
    kind: "BackupSchedule",
    object: schedule({ prune: { interval: "1d", retain: { daily: -1 } } }),
    field: "spec.prune.retain.daily",
    message: /greater than or equal to 0/,
    schemaCheck: true,
  },
  {
    name: "retain within 3q",
    kind: "BackupSchedule",
    object: schedule({ prune: { interval: "1d", retain: { within: "3q" } } }),
    field: "spec.prune.retain.within",
    message: /within must be digits followed by y, m \(months\), d or h/,
  },
  { name: 'check interval ""', kind: "BackupSchedule", object: schedule({ check: { interval: "" } }), field: "spec.check.interval", message: INTERVAL_SYNTAX },
  // BackupSet
  {
    name: "BackupSet without selector",
    kind: "BackupSet",
    object: () => ({ apiVersion: "ros.io/v1", kind: "BackupSet", metadata: { name: "invalid-set" }, spec: {} }),
    field: "spec.selector",
    message: /Required value/,
    schemaCheck: true,
  },
  // BackupJob
  {
    name: "BackupJob without sourcePvc",
    kind: "BackupJob",
    object: job({ sourcePvc: undefined }),
    field: "spec.sourcePvc",
    message: /Required value/,
    schemaCheck: true,
  },
  {
    name: "BackupJob sourcePvc not a name",
    kind: "BackupJob",
    object: job({ sourcePvc: "My_Volume" }),
    field: "spec.sourcePvc",
    message: /sourcePvc must be a lowercase RFC 1123 name/,
  },
  {
    name: "BackupJob without repository",
    kind: "BackupJob",
    object: job({ repository: undefined }),
    field: "spec.repository",
    message: /Required value/,
    schemaCheck: true,
  },
  // BackupRestore
  {
    name: "BackupRestore without a source selector",
    kind: "BackupRestore",
    object: restore({ source: {} }),
    field: "spec.source",
    message: /exactly one of snapshotId, latest, latestBefore must be set/,
  },
  {
    name: "BackupRestore with two source selectors",
    kind: "BackupRestore",
    object: restore({ source: { snapshotId: "0123abcd", latest: { pvc: "data" } } }),
    field: "spec.source",
    message: /exactly one of snapshotId, latest, latestBefore must be set/,
  },
  {
    name: "BackupRestore snapshot id not hex",
    kind: "BackupRestore",
    object: restore({ source: { snapshotId: "latest" } }),
    field: "spec.source.snapshotId",
    message: /snapshotId must be a restic snapshot id/,
  },
  {
    name: "BackupRestore latestBefore not a time",
    kind: "BackupRestore",
    object: restore({ source: { latestBefore: { pvc: "data", time: "yesterday" } } }),
    field: "spec.source.latestBefore.time",
    message: /date-time/,
    schemaCheck: true,
  },
  {
    name: "BackupRestore without a target",
    kind: "BackupRestore",
    object: restore({ target: {} }),
    field: "spec.target",
    message: /exactly one of existingPvc and newPvc must be set/,
  },
  {
    name: "BackupRestore with two targets",
    kind: "BackupRestore",
    object: restore({ target: { existingPvc: "data", newPvc: { name: "copy", size: "1Gi" } } }),
    field: "spec.target",
    message: /exactly one of existingPvc and newPvc must be set/,
  },
  {
    name: "BackupRestore merging into a new PVC",
    kind: "BackupRestore",
    object: restore({ target: { newPvc: { name: "copy", size: "1Gi" }, merge: true } }),
    field: "spec.target.merge",
    message: /merge applies only to existingPvc: a newPvc starts empty/,
  },
  {
    name: "BackupJob worker as root",
    kind: "BackupJob",
    object: job({ workerSecurityContext: { runAsUser: 0 } }),
    field: "spec.workerSecurityContext.runAsUser",
    message: /greater than or equal to 1/,
    schemaCheck: true,
  },
  {
    name: "BackupRestore worker with a negative group",
    kind: "BackupRestore",
    object: restore({ workerSecurityContext: { runAsUser: 999, fsGroup: -1 } }),
    field: "spec.workerSecurityContext.fsGroup",
    message: /greater than or equal to 0/,
    schemaCheck: true,
  },
  {
    name: "plan worker without a user",
    kind: "BackupSchedule",
    object: plan({ workerSecurityContext: { runAsGroup: 999 } }),
    field: "spec.plans[0].workerSecurityContext.runAsUser",
    message: /Required value/,
    schemaCheck: true,
  },
  {
    name: "BackupRestore negative size",
    kind: "BackupRestore",
    object: restore({ target: { newPvc: { name: "copy", size: "-1Gi" } } }),
    field: "spec.target.newPvc.size",
    message: /size must be a storage quantity/,
  },
  {
    name: "BackupRestore zero size",
    kind: "BackupRestore",
    object: restore({ target: { newPvc: { name: "copy", size: "0Gi" } } }),
    field: "spec.target.newPvc.size",
    message: /size must be greater than zero/,
  },
  {
    name: "BackupRestore without repository",
    kind: "BackupRestore",
    object: restore({ repository: undefined }),
    field: "spec.repository",
    message: /Required value/,
    schemaCheck: true,
  },
];

/** Whether an issue reported at `field` belongs to the case's field (the field itself or inside it). */
export function withinField(caseField: string, field: string): boolean {
  return field === caseField || field.startsWith(`${caseField}.`) || field.startsWith(`${caseField}[`);
}

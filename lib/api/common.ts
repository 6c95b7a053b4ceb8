import { z } from "zod";
import { ConditionStatus, INSTALL_NAMESPACE } from "./constants.ts";
import type { ValueOf } from "./constants.ts";
import { cronRules } from "./cron.ts";
import { doesNotMatch, matches, withRules } from "./rules.ts";

// Schemas shared by the four kinds. Every string a CEL rule reads has a maxLength, so the apiserver's cost
// estimate for the rule stays bounded.

const DNS1123_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
const DNS1123_SUBDOMAIN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/** The name of an object such as a Secret or a PVC (an RFC 1123 subdomain). */
export function objectName(what: string): z.ZodString {
  return withRules(z.string().max(253), matches(DNS1123_SUBDOMAIN, `${what} must be a lowercase RFC 1123 name (a-z, 0-9, '-', '.'), e.g. my-data`));
}

/** A namespace name (an RFC 1123 label). */
export const namespaceName = withRules(
  z.string().max(63),
  matches(DNS1123_LABEL, "namespace must be a lowercase RFC 1123 label (a-z, 0-9, '-'), e.g. walle-system"),
);

/**
 * A duration the way the original wrote intervals: digits followed by a unit, repeated (`6h`, `1h30m`, `2w`).
 * Units: s, m, h, d (24h) and w (7d).
 */
export const intervalSchema = withRules(
  z.string().max(32),
  matches("^([0-9]+[smhdw])+$", "interval must be digits followed by a unit (s, m, h, d or w), e.g. 6h or 1h30m"),
  matches("[1-9]", "interval must be greater than zero"),
);

/** A cron expression, checked for its shape and each field's values. */
export const cronSchema = withRules(z.string().max(128), ...cronRules);

/** An IANA time zone name. Only its shape is checked here; the scheduler resolves it. */
export const timeZoneSchema = withRules(
  z.string().max(64),
  matches(
    "^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$",
    "timezone must be an IANA time zone name such as UTC, Europe/Berlin or America/Argentina/Buenos_Aires",
  ),
);

/** A restic `--keep-within` duration: digits followed by y, m (months), d or h, repeated (`1y6m`, `14d`). */
export const keepWithinSchema = withRules(
  z.string().max(32),
  matches("^([0-9]+[ymdh])+$", "within must be digits followed by y, m (months), d or h, e.g. 14d or 1y6m"),
  matches("[1-9]", "within must be greater than zero"),
);

const QUANTITY_SUFFIX = "([KMGTPE]i|[kMGTPE]|[eE][0-9]+)?";

/** A positive storage size in Kubernetes quantity notation (`10Gi`, `500M`). */
export const storageSizeSchema = withRules(
  z.string().max(64),
  matches(`^([0-9]+(\\.[0-9]*)?|\\.[0-9]+)${QUANTITY_SUFFIX}$`, "size must be a storage quantity such as 10Gi or 500M"),
  doesNotMatch(`^(0+(\\.0*)?|\\.0+)${QUANTITY_SUFFIX}$`, "size must be greater than zero"),
);

/** A restic snapshot id, in full (64 hex digits) or shortened (at least 8). */
export const snapshotIdSchema = withRules(
  z.string().max(64),
  matches("^[0-9a-f]{8,64}$", "snapshotId must be a restic snapshot id: 8 to 64 lowercase hex digits"),
);

/** An RFC 3339 time, as metav1.Time serialises it. */
export const timeSchema = z.iso.datetime({ offset: true });

export const nonNegativeCount = z.int32().min(0);

/**
 * A Secret holding restic's environment variables (RESTIC_REPOSITORY, RESTIC_PASSWORD, credentials), as in
 * restic's documentation.
 */
export const repositoryRefSchema = z
  .object({
    name: objectName("name").describe("Name of the Secret."),
    namespace: namespaceName
      .optional()
      .describe(`Namespace of the Secret. Defaults to the namespace Walle is installed in (${INSTALL_NAMESPACE}, or the Helm release's).`),
  })
  .describe(
    "A Secret with the environment variables restic needs to reach the repository (RESTIC_REPOSITORY, " +
      "RESTIC_PASSWORD and the backend's credentials). Walle passes it to the worker by reference and never reads it.",
  );
export type RepositoryRef = z.output<typeof repositoryRefSchema>;

/** The namespace a repository reference points into: its own, or the install namespace (as the tenant guard reads it). */
export function repositoryNamespace(ref: RepositoryRef): string {
  return ref.namespace ?? INSTALL_NAMESPACE;
}

export const LabelSelectorOperator = {
  In: "In",
  NotIn: "NotIn",
  Exists: "Exists",
  DoesNotExist: "DoesNotExist",
} as const;
export type LabelSelectorOperator = ValueOf<typeof LabelSelectorOperator>;

const labelSelectorRequirementSchema = withRules(
  z.object({
    key: z.string().min(1).max(317).describe("The label key the requirement applies to."),
    operator: z.enum(LabelSelectorOperator).describe("How the key relates to the values: In, NotIn, Exists or DoesNotExist."),
    values: z.array(z.string().max(63)).max(256).optional().describe("Values for In and NotIn; empty otherwise."),
  }),
  {
    cel: "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
    message: "values must be non-empty for the In and NotIn operators and empty for Exists and DoesNotExist",
    holds: (requirement) =>
      requirement.operator === LabelSelectorOperator.In || requirement.operator === LabelSelectorOperator.NotIn
        ? (requirement.values?.length ?? 0) > 0
        : (requirement.values?.length ?? 0) === 0,
  },
);

/** A metav1.LabelSelector. An empty selector selects everything. */
export const labelSelectorSchema = z
  .object({
    matchLabels: z.record(z.string().max(317), z.string().max(63)).optional().describe("Labels that must all be present with these values."),
    matchExpressions: z.array(labelSelectorRequirementSchema).max(32).optional().describe("Requirements that must all hold."),
  })
  .meta({ "x-kubernetes-map-type": "atomic" });
export type LabelSelector = z.output<typeof labelSelectorSchema>;

/** A metav1.Condition, with the constraints the Kubernetes API gives it. */
export const conditionSchema = z.object({
  type: z
    .string()
    .max(316)
    .regex(new RegExp("^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"))
    .describe("Type of the condition, in CamelCase."),
  status: z.enum(ConditionStatus).describe("True, False or Unknown."),
  observedGeneration: z.int().min(0).optional().describe("The .metadata.generation the condition was set for."),
  lastTransitionTime: timeSchema.describe("When the status last changed."),
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/)
    .describe("A CamelCase reason for the last transition."),
  message: z.string().max(32768).describe("A human-readable message about the last transition."),
});
export type Condition = z.output<typeof conditionSchema>;

/** Conditions keyed by type, so server-side apply merges them one by one. */
export const conditionsSchema = z
  .array(conditionSchema)
  .max(16)
  .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] })
  .describe("The latest observations of the object's state.");

export const observedGenerationSchema = z.int().min(0).describe("The .metadata.generation this status describes.");

/** Progress of a running restic backup or restore, from its `--json` status lines. */
export const progressSchema = z
  .object({
    percent: z.number().min(0).max(100).describe("Percent done, 0 to 100."),
    filesDone: z.int().min(0).optional().describe("Files processed so far."),
    totalFiles: z.int().min(0).optional().describe("Files to process in total, as far as restic knows yet."),
    bytesDone: z.int().min(0).optional().describe("Bytes processed so far."),
    totalBytes: z.int().min(0).optional().describe("Bytes to process in total, as far as restic knows yet."),
    secondsRemaining: z.int().min(0).optional().describe("restic's estimate of the seconds left."),
  })
  .describe("Progress while the worker runs.");
export type Progress = z.output<typeof progressSchema>;

const posixId = (what: string) => z.int().min(0).max(2_147_483_647).describe(what);

/**
 * (new) Who an unprivileged worker runs as (like VolSync's moverSecurityContext): the application's own user and
 * groups, so the worker reads what the application can read, and restored files belong to it.
 */
export const workerSecurityContextSchema = z
  .object({
    runAsUser: z.int().min(1).max(2_147_483_647).describe("The worker's uid. Not 0: a worker given a security context always runs unprivileged."),
    runAsGroup: posixId("The worker's primary gid. Default: the same number as runAsUser.").optional(),
    fsGroup: posixId("The pod's fsGroup: the kubelet makes a writable volume group-owned by it before the worker starts. Default: runAsGroup.").optional(),
    supplementalGroups: z.array(posixId("A gid.")).max(32).optional().describe("More groups the worker belongs to."),
  })
  .describe(
    "(new) Run the worker unprivileged as this user, even where an admin allows full-fidelity workers. It reads only " +
      "what this user may read (anything else fails the backup as Incomplete), and restores every file owned by this user.",
  );
export type WorkerSecurityContext = z.output<typeof workerSecurityContextSchema>;

import { z } from "zod";
import { backupJobSpecSchema, backupJobStatusSchema } from "./backup-job.ts";
import { backupRestoreSpecSchema, backupRestoreStatusSchema } from "./backup-restore.ts";
import { backupScheduleSpecSchema, backupScheduleStatusSchema } from "./backup-schedule.ts";
import { backupSetSpecSchema, backupSetStatusSchema } from "./backup-set.ts";
import { API_VERSION } from "./constants.ts";

// The one place where objects read from the API become typed values. Parsing applies the same defaults the CRDs
// declare (keepSucceeded 1, keepFailed 3, suspend false, ...), so an object stored before a default existed
// reads the same as a new one, and drops fields the schema does not know, as the apiserver's pruning does.

const ownerReferenceSchema = z.looseObject({
  apiVersion: z.string(),
  kind: z.string(),
  name: z.string(),
  uid: z.string(),
  controller: z.boolean().optional(),
  blockOwnerDeletion: z.boolean().optional(),
});

/** The parts of metav1.ObjectMeta Walle reads. Other fields pass through untouched. */
export const objectMetaSchema = z.looseObject({
  name: z.string().optional(),
  generateName: z.string().optional(),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.int().optional(),
  creationTimestamp: z.string().optional(),
  deletionTimestamp: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  finalizers: z.array(z.string()).optional(),
  ownerReferences: z.array(ownerReferenceSchema).optional(),
});
export type ObjectMeta = z.output<typeof objectMetaSchema>;

function resourceSchema<K extends string, Spec extends z.ZodType, Status extends z.ZodType>(kind: K, spec: Spec, status: Status) {
  return z.object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(kind),
    metadata: objectMetaSchema,
    spec,
    status: status.optional(),
  });
}

export const backupScheduleSchema = resourceSchema("BackupSchedule", backupScheduleSpecSchema, backupScheduleStatusSchema);
export const backupSetSchema = resourceSchema("BackupSet", backupSetSpecSchema, backupSetStatusSchema);
export const backupJobSchema = resourceSchema("BackupJob", backupJobSpecSchema, backupJobStatusSchema);
export const backupRestoreSchema = resourceSchema("BackupRestore", backupRestoreSpecSchema, backupRestoreStatusSchema);

/** The schema of each kind, by kind name. */
export const resourceSchemas = {
  BackupSchedule: backupScheduleSchema,
  BackupSet: backupSetSchema,
  BackupJob: backupJobSchema,
  BackupRestore: backupRestoreSchema,
} as const;

export type ResourceKind = keyof typeof resourceSchemas;
/** A parsed object of a kind: defaults applied, unknown fields dropped. */
export type Resource<K extends ResourceKind> = z.output<(typeof resourceSchemas)[K]>;
/** What a client may write for a kind: defaulted fields optional. */
export type ResourceInput<K extends ResourceKind> = z.input<(typeof resourceSchemas)[K]>;

export type BackupSchedule = Resource<"BackupSchedule">;
export type BackupSet = Resource<"BackupSet">;
export type BackupJob = Resource<"BackupJob">;
export type BackupRestore = Resource<"BackupRestore">;

/** One reason an object is invalid, with the field spelled the way the apiserver spells it. */
export interface FieldIssue {
  readonly field: string;
  readonly message: string;
}

/** `["spec", "plans", 0, "type"]` → `spec.plans[0].type`. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, part) => {
    if (typeof part === "number") return `${out}[${part}]`;
    const name = String(part);
    return out === "" ? name : `${out}.${name}`;
  }, "");
}

function toFieldIssues(error: z.ZodError): FieldIssue[] {
  return error.issues.map((issue) => ({ field: formatPath(issue.path), message: issue.message }));
}

/** An object that does not match its kind's schema. The message lists every field and reason. */
export class ApiParseError extends Error {
  readonly kind: string;
  readonly issues: readonly FieldIssue[];

  constructor(kind: string, issues: readonly FieldIssue[]) {
    super(`Invalid ${kind}: ${issues.map((issue) => `${issue.field || "(object)"}: ${issue.message}`).join("; ")}`);
    this.name = "ApiParseError";
    this.kind = kind;
    this.issues = issues;
  }
}

export type ParseResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ApiParseError };

/** Parses without throwing, for callers that turn a bad spec into a Failed status. */
export function safeParseResource<K extends ResourceKind>(kind: K, raw: unknown): ParseResult<Resource<K>> {
  const result = resourceSchemas[kind].safeParse(raw);
  if (result.success) return { ok: true, value: result.data as Resource<K> };
  return { ok: false, error: new ApiParseError(kind, toFieldIssues(result.error)) };
}

/** Parses an object of a kind, or throws ApiParseError. */
export function parseResource<K extends ResourceKind>(kind: K, raw: unknown): Resource<K> {
  const result = safeParseResource(kind, raw);
  if (!result.ok) throw result.error;
  return result.value;
}

export const parseBackupSchedule = (raw: unknown): BackupSchedule => parseResource("BackupSchedule", raw);
export const parseBackupSet = (raw: unknown): BackupSet => parseResource("BackupSet", raw);
export const parseBackupJob = (raw: unknown): BackupJob => parseResource("BackupJob", raw);
export const parseBackupRestore = (raw: unknown): BackupRestore => parseResource("BackupRestore", raw);

// What a forced backup or restore creates, and the rules it must meet, decided without I/O. The request's id
// (the CloudEvent's) names the object, so a retried delivery of the same request makes nothing twice.
import { z } from "zod";
import { backupRestoreSpecSchema } from "../api/backup-restore.ts";
import { namespaceName, objectName, type Progress } from "../api/common.ts";
import { API_VERSION, CREATED_BY, Label, WalleAnnotation } from "../api/constants.ts";
import type { Manifest } from "./builders.ts";
import { boundedName, shortHash } from "./names.ts";

export const backupRequestSchema = z.object({
  namespace: namespaceName,
  pvc: objectName("pvc"),
  repository: z.object({ name: objectName("repository.name"), namespace: namespaceName.optional() }).optional(),
});
export type BackupRequest = z.output<typeof backupRequestSchema>;

/** A BackupRestore's spec plus the namespace to restore in; the schema's own rules (exactly one source, one target) apply. */
export const restoreRequestSchema = backupRestoreSpecSchema.and(z.object({ namespace: namespaceName }));
export type RestoreRequest = z.output<typeof restoreRequestSchema>;

/** What a worker reports while it runs (lib/restic/progress.ts sends it). */
export const progressReportSchema = z.object({
  percentDone: z.number().min(0).max(1),
  filesDone: z.int().min(0).optional(),
  totalFiles: z.int().min(0).optional(),
  bytesDone: z.int().min(0).optional(),
  totalBytes: z.int().min(0).optional(),
  secondsRemaining: z.number().min(0).optional(),
});
export type ProgressReport = z.output<typeof progressReportSchema>;

/** A field at fault, spelled as the sender wrote it (`data.pvc`, `ce-id`), and why. */
export interface Issue {
  readonly path: string;
  readonly message: string;
}

/** A request refused: the message, and each field at fault. */
export interface Refusal {
  readonly refused: string;
  readonly issues: readonly Issue[];
}

/** What a request falls back on: the install namespace, and the repository a backup request may leave out. */
export interface Defaults {
  readonly installNamespace: string;
  readonly defaultRepository?: string;
}

/** The repository a forced backup means: the one it names, else the configured default; and its namespace. */
export function requestedRepository(req: BackupRequest, defaults: Defaults): { name: string; namespace: string } | undefined {
  const repository = req.repository ?? (defaults.defaultRepository ? { name: defaults.defaultRepository } : undefined);
  return repository && { name: repository.name, namespace: repository.namespace ?? defaults.installNamespace };
}

const requested = (namespace: string, name: string, requestId: string) => ({
  name,
  namespace,
  labels: { [Label.CreatedBy]: CREATED_BY },
  annotations: { [WalleAnnotation.RequestedByEvent]: requestId },
});

/** The BackupJob a forced backup creates, or why not. */
export function forcedBackupJob(req: BackupRequest, requestId: string, defaults: Defaults): Manifest | Refusal {
  const repository = requestedRepository(req, defaults);
  if (!repository) {
    return {
      refused: "data.repository is required: no default repository is configured (WALLE_DEFAULT_REPOSITORY)",
      issues: [{ path: "data.repository", message: "is required" }],
    };
  }
  const repoNs = repository.namespace;
  // Anyone in the cluster can send this event: never let it carry one tenant's data into another's repository.
  if (repoNs !== req.namespace && repoNs !== defaults.installNamespace) {
    return {
      refused: `data.repository.namespace must be ${req.namespace} (the PVC's) or ${defaults.installNamespace}`,
      issues: [
        {
          path: "data.repository.namespace",
          message: `a PVC in ${req.namespace} may be backed up only into its own namespace's or the install namespace's repository`,
        },
      ],
    };
  }
  return {
    apiVersion: API_VERSION,
    kind: "BackupJob",
    metadata: requested(req.namespace, boundedName([req.pvc, "forced", shortHash(requestId, 10)]), requestId),
    spec: { sourcePvc: req.pvc, repository: { name: repository.name, namespace: repoNs } },
  };
}

/**
 * The BackupRestore a forced restore creates, or why not. Its repository is the target namespace's own or a shared
 * one in the install namespace; whether the caller may restore from it is for RBAC (access.ts restoreAccess).
 */
export function forcedBackupRestore(req: RestoreRequest, requestId: string, defaults: Defaults): Manifest | Refusal {
  const repoNs = req.repository.namespace ?? defaults.installNamespace;
  if (repoNs !== req.namespace && repoNs !== defaults.installNamespace) {
    return {
      refused: `data.repository.namespace must be ${req.namespace} (the target's) or ${defaults.installNamespace}`,
      issues: [
        {
          path: "data.repository.namespace",
          message: `a restore into ${req.namespace} may read only its own namespace's or the install namespace's repository`,
        },
      ],
    };
  }
  const { namespace, ...spec } = req;
  return {
    apiVersion: API_VERSION,
    kind: "BackupRestore",
    metadata: requested(namespace, boundedName(["restore", shortHash(requestId, 10)]), requestId),
    spec: { ...spec, repository: { name: req.repository.name, namespace: repoNs } },
  };
}

export const isRefusal = <T extends object>(r: T | Refusal): r is Refusal => "refused" in r;

/** A worker's report as `status.progress` shows it: a percentage to one decimal, whole seconds. */
export function progressStatus(p: ProgressReport): Progress {
  return {
    percent: Math.round(p.percentDone * 1000) / 10,
    ...(p.filesDone !== undefined ? { filesDone: p.filesDone } : {}),
    ...(p.totalFiles !== undefined ? { totalFiles: p.totalFiles } : {}),
    ...(p.bytesDone !== undefined ? { bytesDone: p.bytesDone } : {}),
    ...(p.totalBytes !== undefined ? { totalBytes: p.totalBytes } : {}),
    ...(p.secondsRemaining !== undefined ? { secondsRemaining: Math.round(p.secondsRemaining) } : {}),
  };
}

/**
 * Which run a progress report is about, from its subject: the worker names its BackupJob or BackupRestore by
 * path. A backup's report must name a BackupJob, a restore's a BackupRestore.
 */
export function progressSubject(subject: string | undefined, kind: "BackupJob" | "BackupRestore"): { namespace: string; name: string } | Refusal {
  const plural = kind === "BackupJob" ? "backupjobs" : "backuprestores";
  const m = new RegExp(`^/apis/ros\\.io/v1/namespaces/([^/]+)/${plural}/([^/]+)$`).exec(subject ?? "");
  if (m?.[1] && m[2]) return { namespace: m[1], name: m[2] };
  return {
    refused: `subject must be the ${kind}'s path, /apis/ros.io/v1/namespaces/<ns>/${plural}/<name>`,
    issues: [{ path: "subject", message: `not a ${kind} path` }],
  };
}

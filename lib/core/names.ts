// Deterministic names for the objects Walle creates, so a duplicate event or a second tick meets AlreadyExists
// instead of making a second snapshot. A name that would pass the limit is shortened and given a hash of the
// whole, as VolSync's GetJobName does.
import { createHash } from "node:crypto";

/** Kubernetes' limit for names that also become label values (Job names label their pods). */
export const NAME_LIMIT = 63;

export function shortHash(text: string, length = 8): string {
  return createHash("sha256").update(text).digest("hex").slice(0, length);
}

/** `parts` joined by '-', or, when too long, a prefix of it plus a hash of the whole; always a valid DNS label. */
export function boundedName(parts: readonly string[], limit = NAME_LIMIT): string {
  const full = parts
    .join("-")
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-");
  if (full.length <= limit) return full;
  const hash = shortHash(full);
  const prefix = full.slice(0, limit - hash.length - 1).replace(/-+$/, "");
  return `${prefix}-${hash}`;
}

/**
 * Names of a BackupJob's children. The owner's UID is part of them, so a BackupJob deleted and created again
 * under the same name never adopts its predecessor's leftovers. Children in the repository namespace also carry
 * the BackupJob's namespace, since BackupJobs of many namespaces share that one.
 */
export function backupJobChildNames(job: { namespace: string; name: string; uid: string }) {
  const id = shortHash(job.uid, 6);
  return {
    /** The VolumeSnapshot of the PVC, in the PVC's namespace. */
    sourceSnapshot: boundedName(["walle", job.name, id]),
    /** The pre-provisioned content and snapshot in the repository namespace (cross-namespace moves only). */
    movedContent: boundedName(["walle", job.namespace, job.name, id]),
    movedSnapshot: boundedName(["walle", job.namespace, job.name, id]),
    /** The PVC made from the snapshot, and the worker Job that mounts it, in the worker's namespace. */
    pvc: boundedName(["walle", job.namespace, job.name, id]),
    job: boundedName(["walle-backup", job.namespace, job.name, id]),
  };
}

export function restoreChildNames(restore: { namespace: string; name: string; uid: string }) {
  const id = shortHash(restore.uid, 6);
  return {
    /** A new PVC restored next to the repository, to be handed over to the target namespace. */
    stagingPvc: boundedName(["walle-restore", restore.namespace, restore.name, id]),
    job: boundedName(["walle-restore", restore.namespace, restore.name, id]),
  };
}

// Who may trigger what (DESIGN §3): the Kubernetes permissions a forced backup, a forced restore, a resync or a
// tick needs, decided without I/O. Each mirrors what the request would make Walle do, so RBAC, not Walle, says who
// may do it: a backup of a PVC needs what creating the BackupJob by hand needs, and so on. What RBAC has no verb for
// (using a shared repository, resyncing everything) is a verb on a resource of Walle's group that no object backs,
// granted like any other (`kubectl create role … --verb=backup --resource=repositories.ros.io --resource-name=…`).
import { GROUP } from "../api/constants.ts";
import type { BackupRequest, RestoreRequest } from "./requests.ts";

/** A SubjectAccessReview's resourceAttributes: one thing the caller must be allowed to do. */
export interface Access {
  readonly verb: string;
  readonly group: string;
  readonly resource: string;
  readonly subresource?: string;
  /** Absent: in every namespace (or a cluster-scoped resource). */
  readonly namespace?: string;
  readonly name?: string;
}

/** The resource, in Walle's group, whose names are the shared repositories' Secrets in the install namespace. */
export const REPOSITORIES = "repositories";

export const RepositoryVerb = {
  /** Back a PVC up into this shared repository. */
  Backup: "backup",
  /** Restore from this shared repository: any snapshot in it, so grant it only to whom all of it may be shown. */
  Restore: "restore",
} as const;

/** Drive all in-flight work one step: every BackupJob, BackupRestore and BackupSet in the cluster. */
export const RESYNC_ACCESS: readonly Access[] = [{ verb: "resync", group: GROUP, resource: "backupjobs" }];

/** Run every schedule now: BackupSets and BackupJobs anywhere, prune and check of every repository. */
export const TICK_ACCESS: readonly Access[] = [{ verb: "tick", group: GROUP, resource: "backupschedules" }];

/** Run one schedule now: `tick` on that BackupSchedule alone. */
export const scheduleAccess = (name: string): Access[] => [{ verb: "tick", group: GROUP, resource: "backupschedules", name }];

interface Defaults {
  readonly installNamespace: string;
  readonly defaultRepository?: string;
}

const sharedRepository = (verb: string, name: string, defaults: Defaults): Access => ({ verb, group: GROUP, resource: REPOSITORIES, namespace: defaults.installNamespace, name });

/** A forced backup: create a BackupJob in the PVC's namespace, and, for a shared repository, `backup` on it. */
export function backupAccess(req: BackupRequest, defaults: Defaults): Access[] {
  const repository = req.repository ?? (defaults.defaultRepository ? { name: defaults.defaultRepository } : undefined);
  const repoNs = repository?.namespace ?? defaults.installNamespace;
  return [
    { verb: "create", group: GROUP, resource: "backupjobs", namespace: req.namespace },
    ...(repository && repoNs === defaults.installNamespace && repoNs !== req.namespace ? [sharedRepository(RepositoryVerb.Backup, repository.name, defaults)] : []),
  ];
}

/**
 * A forced restore: create a BackupRestore in the target namespace and, when it restores another namespace's PVC,
 * in that namespace too (its owner's data); from a shared repository, `restore` on it.
 */
export function restoreAccess(req: RestoreRequest, defaults: Defaults): Access[] {
  const repoNs = req.repository.namespace ?? defaults.installNamespace;
  const sourceNs = (req.source.latest ?? req.source.latestBefore)?.namespace;
  return [
    { verb: "create", group: GROUP, resource: "backuprestores", namespace: req.namespace },
    ...(sourceNs && sourceNs !== req.namespace ? [{ verb: "create", group: GROUP, resource: "backuprestores", namespace: sourceNs }] : []),
    ...(repoNs !== req.namespace ? [sharedRepository(RepositoryVerb.Restore, req.repository.name, defaults)] : []),
  ];
}

/** "create backupjobs.ros.io in namespace shop", as a refusal names it. */
export function describeAccess(a: Access): string {
  const what = `${a.resource}${a.subresource ? `/${a.subresource}` : ""}${a.group ? `.${a.group}` : ""}${a.name ? ` ${a.name}` : ""}`;
  return `${a.verb} ${what} ${a.namespace ? `in namespace ${a.namespace}` : "in all namespaces"}`;
}

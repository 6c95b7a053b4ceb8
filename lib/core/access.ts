// Who may trigger what (docs/architecture.md, Security): the Kubernetes permissions a forced backup, a forced restore, a resync or a
// tick needs, decided without I/O. Each mirrors what the request would make Walle do, so RBAC, not Walle, says who
// may do it: a backup of a PVC needs what creating the BackupJob by hand needs, and so on. What RBAC has no verb for
// (using a shared repository, resyncing everything) is a verb on a resource of Walle's group that no object backs,
// granted like any other (`kubectl create role … --verb=backup --resource=repositories.ros.io --resource-name=…`).
import { GROUP, Label, WORKER_SERVICE_ACCOUNT } from "../api/constants.ts";
import { requestedRepository, type BackupRequest, type Defaults, type RestoreRequest } from "./requests.ts";

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

const sharedRepository = (verb: string, name: string, defaults: Defaults): Access => ({
  verb,
  group: GROUP,
  resource: REPOSITORIES,
  namespace: defaults.installNamespace,
  name,
});

/** A forced backup: create a BackupJob in the PVC's namespace, and, for a shared repository, `backup` on it. */
export function backupAccess(req: BackupRequest, defaults: Defaults): Access[] {
  const repository = requestedRepository(req, defaults);
  return [
    { verb: "create", group: GROUP, resource: "backupjobs", namespace: req.namespace },
    ...(repository && repository.namespace === defaults.installNamespace && repository.namespace !== req.namespace
      ? [sharedRepository(RepositoryVerb.Backup, repository.name, defaults)]
      : []),
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

/** The pod a service-account token is bound to, from a TokenReview's extra (Kubernetes' pod claims). */
export interface BoundPod {
  readonly namespace: string;
  /** The service account the token was issued to, which the pod runs as. */
  readonly account: string;
  readonly name: string;
  readonly uid: string;
}

const POD_NAME = "authentication.kubernetes.io/pod-name";
const POD_UID = "authentication.kubernetes.io/pod-uid";

/** The pod a token names, or undefined for a token bound to none (a user's, a plain service-account token). */
export function boundPod(username: string, extra: Readonly<Record<string, readonly string[]>>): BoundPod | undefined {
  const [, namespace, account] = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(username) ?? [];
  const name = extra[POD_NAME]?.[0];
  const uid = extra[POD_UID]?.[0];
  return namespace && account && name && uid ? { namespace, account, name, uid } : undefined;
}

/**
 * Why a pod may not report a run's progress, or undefined when it may: it must run as the worker service account,
 * be the very pod the token is bound to (same uid), in the run's worker namespace (its repository's, where only
 * Walle's workers carry a run's labels unless its own tenant made them), and carry the labels Walle gives the worker
 * of that run.
 */
export function notTheWorker(
  pod: { readonly metadata: { readonly uid?: string; readonly labels?: Readonly<Record<string, string>> } } | null,
  bound: BoundPod,
  kind: "BackupJob" | "BackupRestore",
  run: { readonly namespace: string; readonly name: string; readonly workerNamespace: string },
): string | undefined {
  const which = `pod ${bound.namespace}/${bound.name}`;
  if (bound.account !== WORKER_SERVICE_ACCOUNT)
    return `${which} runs as service account ${bound.account}, not ${WORKER_SERVICE_ACCOUNT}, which every worker of Walle runs as`;
  if (bound.namespace !== run.workerNamespace)
    return `${which} is not in ${run.workerNamespace}, where the workers of ${kind} ${run.namespace}/${run.name} run`;
  if (!pod || pod.metadata.uid !== bound.uid) return `${which}, which the token is bound to, no longer exists`;
  const labels = pod.metadata.labels ?? {};
  const owner = kind === "BackupJob" ? labels[Label.BackupJob] : labels[Label.BackupRestore];
  if (owner !== run.name || labels[Label.OwnerNamespace] !== run.namespace) return `${which} is not the worker of ${kind} ${run.namespace}/${run.name}`;
  return undefined;
}

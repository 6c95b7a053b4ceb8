// Names that Walle shares with the original Walle (jess-sol/restic-k8s) and with the cluster it is installed in.
// Each set is an `as const` object with a union type of the same name, so code can say
// `BackupJobPhase.Finished` and a variable can be typed `BackupJobPhase`.

/** The union of an `as const` object's values: `ValueOf<typeof JobType>` is `"backup" | "prune" | ...`. */
export type ValueOf<T> = T[keyof T];

export const GROUP = "ros.io";
export const VERSION = "v1";
export const API_VERSION = `${GROUP}/${VERSION}`;

/** `kubectl get walle` lists every Walle object. */
export const CATEGORY = "walle";

/** Value of the `app.kubernetes.io/created-by` label on everything Walle creates (as the original did). */
export const CREATED_BY = "walle";

/**
 * The namespace Walle is installed in. A repository reference without a namespace points here (the original
 * read its own service-account namespace for this), and the tenant guard trusts only service accounts of
 * this namespace. Installing elsewhere means regenerating the CRDs and the policy with another value.
 */
export const INSTALL_NAMESPACE = "walle-system";

/** Walle's own service accounts, in INSTALL_NAMESPACE. Only these may point a BackupJob at another namespace. */
export const ServiceAccount = {
  Reconcile: "walle-reconcile",
  Tick: "walle-tick",
} as const;
export type ServiceAccount = ValueOf<typeof ServiceAccount>;

/**
 * (new) The service account of every worker pod, which Walle creates in each namespace its workers run in. It has
 * no RBAC and its pods mount no API token: it exists so that the progress token the kubelet projects into a
 * worker names an identity of its own, which the function requires, and not the namespace's `default`.
 * Not in ServiceAccount: it is trusted by nothing.
 */
export const WORKER_SERVICE_ACCOUNT = "walle-worker";

/** The user name the API server gives a service account's token. */
export function serviceAccountUser(namespace: string, name: string): string {
  return `system:serviceaccount:${namespace}:${name}`;
}

/** The request users the tenant guard lets through, in a fixed order so the generated policy is stable. */
export const TRUSTED_USERS: readonly string[] = Object.values(ServiceAccount).map((name) => serviceAccountUser(INSTALL_NAMESPACE, name));

export const Label = {
  CreatedBy: "app.kubernetes.io/created-by",
  BackupSchedule: "ros.io/backup-schedule",
  BackupSet: "ros.io/backupset",
  BackupJob: "ros.io/backup-job",
  /** (new) The namespace of the BackupJob or BackupRestore a child belongs to, for children in other namespaces. */
  OwnerNamespace: "ros.io/owner-namespace",
  BackupJobType: "ros.io/backup-job-type",
  /** (new) Marks the worker Job and temporary objects of a BackupRestore. */
  BackupRestore: "ros.io/backup-restore",
  /** (new) On worker Jobs: the repository Secret they use (in the Job's namespace), to count who writes to it. */
  Repository: "ros.io/repository",
} as const;
export type Label = ValueOf<typeof Label>;

/** Values of the `ros.io/backup-job-type` label. */
export const JobType = {
  Backup: "backup",
  Prune: "prune",
  Check: "check",
  Restore: "restore",
  /** A short worker that lists a PVC's snapshots for kubectl walle snapshots. */
  Snapshots: "snapshots",
} as const;
export type JobType = ValueOf<typeof JobType>;

/**
 * The HTTP trailers the reconcile function ends the stream of a command's output with (GET /streams/<ns>/<name>):
 * the command's exit code, and what went wrong (its stderr's tail), URI-encoded. The worker saves the output only
 * when the exit code is 0.
 */
export const StreamTrailer = { ExitCode: "walle-exit-code", Error: "walle-error" } as const;

/** Workload annotations the original reserved for hooks. */
export const Annotation = {
  BeforeBackup: "ros.io/before-backup",
  AfterBackup: "ros.io/after-backup",
  BackupCommand: "ros.io/backup-command",
} as const;
export type Annotation = ValueOf<typeof Annotation>;

/**
 * Finalizers the original operator put on its objects. Walle adds none of them, but objects left behind by the
 * original carry them, and nothing else would ever remove them.
 */
export const LegacyFinalizer = {
  BackupSchedule: "ros.io/backup-schedule",
  BackupSet: "ros.io/backup-set",
  BackupJob: "ros.io/backup-job",
  /** (new) The namespace of the BackupJob or BackupRestore a child belongs to, for children in other namespaces. */
  OwnerNamespace: "ros.io/owner-namespace",
} as const;
export type LegacyFinalizer = ValueOf<typeof LegacyFinalizer>;

export const ConditionStatus = {
  True: "True",
  False: "False",
  Unknown: "Unknown",
} as const;
export type ConditionStatus = ValueOf<typeof ConditionStatus>;

/** (new) Annotations Walle puts on the temporary objects it makes, to carry what a later step needs. */
export const WalleAnnotation = {
  /** On a source VolumeSnapshot: the PVC's storage class, so the PVC made from the snapshot gets the same one. */
  SourceStorageClass: "ros.io/source-storage-class",
  /** On a source VolumeSnapshot: the PVC's size, for a driver that reports no restoreSize. */
  SourceSize: "ros.io/source-size",
  /** On a handed-over PV: the reclaim policy to put back once the target PVC is bound. */
  OriginalReclaimPolicy: "ros.io/original-reclaim-policy",
  /** On a forced BackupJob or BackupRestore: the id of the CloudEvent that asked for it. */
  RequestedByEvent: "ros.io/requested-by-event",
  /**
   * On the BackupJobs of a schedule's first run into a repository, "false" on all but one: their workers wait for
   * that one's worker to create the repository instead of racing it with `restic init`.
   */
  InitializesRepository: "ros.io/initializes-repository",
  /**
   * On a schedule's BackupSet: how many BackupJobs its run makes. The set cannot finish with fewer, so a tick killed
   * before it made them all leaves the set Running until the next tick makes the rest.
   */
  BackupJobs: "ros.io/backup-jobs",
  /**
   * On a BackupSchedule: a request to run it now (`kubectl walle backup --schedule`), as Flux's
   * `reconcile.fluxcd.io/requestedAt`. Each new value runs the schedule once; `status.lastBackupRequest` says which
   * value was handled and what came of it.
   */
  BackupRequested: "ros.io/backup-requested",
} as const;
export type WalleAnnotation = ValueOf<typeof WalleAnnotation>;

// Builders of the objects Walle creates for a backup or a restore. Pure: the same inputs give the same object,
// with deterministic names, Walle's labels, and owner references where Kubernetes allows them (same namespace).
import { API_VERSION, CREATED_BY, JobType, Label, WORKER_SERVICE_ACCOUNT } from "../api/constants.ts";
import type { SnapClassMapping } from "../api/config.ts";
import { workerHostname } from "../restic/locks.ts";
import { SECRET_ENV_PREFIX } from "../restic/secret-env.ts";
import type { Action } from "./decision.ts";
import { boundedName } from "./names.ts";
import { UNPRIVILEGED, workerSecurity, type WorkerMode } from "./privileges.ts";

export interface WalleConfig {
  /** The namespace Walle is installed in; repositories without a namespace live here. */
  readonly installNamespace: string;
  /** restic's --host for every snapshot. */
  readonly clusterName: string;
  readonly workerImage: string;
  readonly snapClassMappings: readonly SnapClassMapping[];
  /** Where workers POST progress CloudEvents (the reconcile function's own URL), if anywhere. */
  readonly progressSinkUrl?: string;
  /**
   * The audience of the token a worker proves itself with when it reports progress (default walle-progress): a
   * token for it is good for nothing else, neither the API server nor a trigger.
   */
  readonly progressAudience?: string;
  /** The least time between two progress reports of a worker (its PROGRESS_INTERVAL); the worker's default is 10 s. */
  readonly progressIntervalSeconds?: number;
  /** The worker Job's activeDeadlineSeconds. */
  readonly workerDeadlineSeconds: number;
  /** How long a VolumeSnapshot may take to become ready before the BackupJob fails. */
  readonly snapshotTimeoutSeconds: number;
  /** How long a snapshot hook may run in one container before Walle stops waiting (default 60). */
  readonly hookTimeoutSeconds?: number;
  /** Retries of a worker pod that failed for a reason other than a known restic failure. */
  readonly workerBackoffLimit: number;
  /** Backup and restore workers that may use one repository at once; more wait for a turn. */
  readonly maxWorkersPerRepository: number;
}

/** An owner of an object: the garbage collector deletes the object once all its owners are gone. */
export interface OwnerReference {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly uid: string;
  readonly controller?: boolean;
  readonly blockOwnerDeletion?: boolean;
}

/** The owner that controls an object: a BackupJob or BackupRestore of its children. */
export interface OwnerRef extends OwnerReference {
  readonly controller: true;
  readonly blockOwnerDeletion: true;
}

export function ownerRef(kind: string, name: string, uid: string): OwnerRef {
  return { apiVersion: API_VERSION, kind, name, uid, controller: true, blockOwnerDeletion: true };
}

/** Objects Walle creates: typed loosely enough to hold any kind, strictly enough to carry names and labels. */
export interface Manifest {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace?: string;
    readonly labels: Readonly<Record<string, string>>;
    readonly annotations?: Readonly<Record<string, string>>;
    readonly ownerReferences?: readonly OwnerReference[];
  };
  readonly [field: string]: unknown;
}

/**
 * Owner references only within one namespace: the garbage collector treats a reference to an owner in another
 * namespace as dangling and deletes the child, so cross-namespace children are tracked by label instead.
 */
export function ownedMetadata(
  name: string,
  namespace: string | undefined,
  labels: Record<string, string>,
  owner: { namespace: string; ref: OwnerRef },
): Manifest["metadata"] {
  return {
    name,
    ...(namespace ? { namespace } : {}),
    labels: { [Label.CreatedBy]: CREATED_BY, ...labels },
    ...(namespace === owner.namespace ? { ownerReferences: [owner.ref] } : {}),
  };
}

export function volumeSnapshot(metadata: Manifest["metadata"], source: { pvc: string } | { content: string }, className?: string): Manifest {
  return {
    apiVersion: "snapshot.storage.k8s.io/v1",
    kind: "VolumeSnapshot",
    metadata,
    spec: {
      source: "pvc" in source ? { persistentVolumeClaimName: source.pvc } : { volumeSnapshotContentName: source.content },
      ...(className ? { volumeSnapshotClassName: className } : {}),
    },
  };
}

/**
 * The annotations the CSI snapshotter reads a content's deletion secret from (external-snapshotter
 * pkg/utils: AnnDeletionSecretRefName and AnnDeletionSecretRefNamespace). It writes them on a content it provisions,
 * from the class's parameters; a pre-provisioned content must carry them itself.
 */
export const DELETION_SECRET_ANNOTATIONS = [
  "snapshot.storage.kubernetes.io/deletion-secret-name",
  "snapshot.storage.kubernetes.io/deletion-secret-namespace",
] as const;

/**
 * docs/architecture.md, Security: moving a snapshot, step 2: a pre-provisioned content naming the same storage snapshot by its handle, with what the
 * original's controllers need to judge and later delete it: the driver, the class, the source volume's mode
 * (which a PVC made from it must match), and the deletion secret a driver with credentials needs.
 */
export function movedContent(
  metadata: Manifest["metadata"],
  from: { driver: string; snapshotHandle: string; className?: string; sourceVolumeMode?: string; annotations?: Readonly<Record<string, string>> },
  snapshotRef: { namespace: string; name: string },
): Manifest {
  const secret = Object.fromEntries(DELETION_SECRET_ANNOTATIONS.flatMap((key) => (from.annotations?.[key] ? [[key, from.annotations[key]]] : [])));
  return {
    apiVersion: "snapshot.storage.k8s.io/v1",
    kind: "VolumeSnapshotContent",
    metadata: Object.keys(secret).length ? { ...metadata, annotations: { ...metadata.annotations, ...secret } } : metadata,
    spec: {
      driver: from.driver,
      deletionPolicy: "Delete",
      ...(from.className ? { volumeSnapshotClassName: from.className } : {}),
      ...(from.sourceVolumeMode ? { sourceVolumeMode: from.sourceVolumeMode } : {}),
      source: { snapshotHandle: from.snapshotHandle },
      volumeSnapshotRef: { apiVersion: "snapshot.storage.k8s.io/v1", kind: "VolumeSnapshot", ...snapshotRef },
    },
  };
}

export function pvcFromSnapshot(metadata: Manifest["metadata"], snapshot: string, size: string, storageClass?: string): Manifest {
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata,
    spec: {
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: size } },
      ...(storageClass ? { storageClassName: storageClass } : {}),
      dataSource: { apiGroup: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: snapshot },
    },
  };
}

/** The worker's one container: its result is that container's termination message (lib/core/worker-result.ts). */
export const WORKER_CONTAINER = "worker";
const SOURCE_PATH = "/data";
const CACHE_PATH = "/cache";
const PROGRESS_TOKEN_PATH = "/var/run/secrets/walle/progress";
export const DEFAULT_PROGRESS_AUDIENCE = "walle-progress";

export interface WorkerJobInput {
  readonly metadata: Manifest["metadata"];
  readonly config: WalleConfig;
  readonly command: (typeof JobType)[keyof typeof JobType];
  readonly repositorySecret: string;
  /** The volume the worker reads (backup) or writes (restore); prune and check have none. */
  readonly volume?: { readonly claimName: string; readonly readOnly: boolean; readonly mountPath?: string };
  readonly env: Readonly<Record<string, string>>;
  /** Full fidelity or unprivileged (lib/core/privileges.ts). Default: unprivileged as the images' user. */
  readonly mode?: WorkerMode;
  /**
   * The namespace whose users see the worker's result. When the repository's Secret lives elsewhere (a shared
   * repository), the worker names it by its Secret and masks its location (REPOSITORY_SHOWN_AS).
   */
  readonly shownIn?: string;
}

/**
 * The worker Job, hardened as docs/architecture.md, Security says: no service-account token, read-only root filesystem, no privilege
 * escalation, seccomp RuntimeDefault, every capability dropped but those its mode allows, the repository Secret by
 * reference only (envFrom), the volume read-only for a backup, restic's cache on an emptyDir. Known restic
 * failures (wrong password, no repository, a held lock) fail the Job at once instead of being retried.
 */
export function workerJob(input: WorkerJobInput): Manifest {
  const { config, volume } = input;
  const security = workerSecurity(input.mode ?? UNPRIVILEGED, input.command);
  // Who writes to a repository is counted from the cluster (K8up's locker does the same), by this label.
  const labels = { ...input.metadata.labels, [Label.Repository]: repositoryLabel(input.repositorySecret) };
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { ...input.metadata, labels },
    spec: {
      backoffLimit: config.workerBackoffLimit,
      activeDeadlineSeconds: config.workerDeadlineSeconds,
      // Walle deletes the Job once it has read the result; this is only the safety net.
      ttlSecondsAfterFinished: 86_400,
      // Retrying cannot fix an invalid configuration (2), unreadable source files (3: each retry would only make
      // another incomplete snapshot), a missing repository (10), a wrong password (12) or a cancellation (130); a
      // held lock (11) or a network failure (1) may pass, so those get backoffLimit retries.
      podFailurePolicy: {
        rules: [{ action: "FailJob", onExitCodes: { containerName: WORKER_CONTAINER, operator: "In", values: [2, 3, 10, 12, 130] } }],
      },
      // The next attempt starts only once the last one has failed for good, so a lock left with this Job's hostname
      // is a dead attempt's (lib/restic/locks.ts); this is also the only value podFailurePolicy allows.
      podReplacementPolicy: "Failed",
      template: {
        metadata: { labels },
        spec: {
          // restic writes the hostname into each lock: this one names the Job and the cluster, where the default
          // (the pod's random name) would name neither.
          hostname: workerHostname(config.clusterName, input.metadata.name ?? ""),
          restartPolicy: "Never",
          serviceAccountName: WORKER_SERVICE_ACCOUNT,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: security.pod,
          containers: [
            {
              name: WORKER_CONTAINER,
              image: config.workerImage,
              args: [input.command],
              // The Secret's keys arrive prefixed, so none can set a variable the worker, Node or the image reads; the
              // worker takes only restic's repository variables from them (lib/restic/secret-env.ts).
              envFrom: [{ prefix: SECRET_ENV_PREFIX, secretRef: { name: input.repositorySecret } }],
              env: Object.entries({
                CLUSTER_NAME: config.clusterName,
                RESTIC_CACHE_DIR: CACHE_PATH,
                ...(config.progressSinkUrl
                  ? {
                      PROGRESS_SINK_URL: config.progressSinkUrl,
                      PROGRESS_TOKEN_FILE: `${PROGRESS_TOKEN_PATH}/token`,
                      ...(config.progressIntervalSeconds ? { PROGRESS_INTERVAL: `${config.progressIntervalSeconds}s` } : {}),
                    }
                  : {}),
                ...(input.shownIn && input.shownIn !== input.metadata.namespace
                  ? { REPOSITORY_SHOWN_AS: `Secret ${input.metadata.namespace}/${input.repositorySecret}` }
                  : {}),
                ...input.env,
              }).map(([name, value]) => ({ name, value })),
              volumeMounts: [
                ...(volume ? [{ name: "volume", mountPath: volume.mountPath ?? SOURCE_PATH, readOnly: volume.readOnly }] : []),
                { name: "cache", mountPath: CACHE_PATH },
                { name: "tmp", mountPath: "/tmp" },
                ...(config.progressSinkUrl ? [{ name: "progress-token", mountPath: PROGRESS_TOKEN_PATH, readOnly: true }] : []),
              ],
              securityContext: security.container,
              terminationMessagePolicy: "FallbackToLogsOnError",
              resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "1Gi" } },
            },
          ],
          volumes: [
            ...(volume ? [{ name: "volume", persistentVolumeClaim: { claimName: volume.claimName, readOnly: volume.readOnly } }] : []),
            { name: "cache", emptyDir: {} },
            { name: "tmp", emptyDir: {} },
            // Not an API token: one bound to this pod, for the progress audience only, which the function checks
            // against the pod's labels. The kubelet refreshes it.
            ...(config.progressSinkUrl
              ? [
                  {
                    name: "progress-token",
                    projected: {
                      sources: [
                        { serviceAccountToken: { audience: config.progressAudience ?? DEFAULT_PROGRESS_AUDIENCE, expirationSeconds: 3600, path: "token" } },
                      ],
                    },
                  },
                ]
              : []),
          ],
        },
      },
    },
  };
}

/**
 * The worker's own service account in `namespace`: no RBAC is ever bound to it by Walle, it mounts no token, and it
 * holds no Secrets, so the only credential it gives a worker is the progress token the kubelet projects.
 */
export function workerServiceAccount(namespace: string): Manifest {
  return {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name: WORKER_SERVICE_ACCOUNT, namespace, labels: { [Label.CreatedBy]: CREATED_BY } },
    automountServiceAccountToken: false,
  };
}

/**
 * The actions that start a worker: its service account (already there after the first run in a namespace; the
 * executor takes AlreadyExists as done), then its Job, whose pods the API server admits only once the account
 * exists.
 */
export function workerActions(input: WorkerJobInput): Action[] {
  const namespace = input.metadata.namespace;
  if (!namespace) throw new Error(`worker Job ${input.metadata.name} has no namespace`);
  return [
    { op: "create", manifest: workerServiceAccount(namespace) },
    { op: "create", manifest: workerJob(input) },
  ];
}

export const workerSourcePath = SOURCE_PATH;

/** The `ros.io/repository` label of a repository Secret's workers: its name, or a bounded form of a long one. */
export function repositoryLabel(secret: string): string {
  return boundedName([secret]);
}

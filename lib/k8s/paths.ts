// REST paths of the kinds Walle touches, without a discovery round-trip on every cold start.
export interface KindInfo {
  readonly apiVersion: string;
  readonly plural: string;
  readonly namespaced: boolean;
}

export const kinds = {
  BackupSchedule: { apiVersion: "ros.io/v1", plural: "backupschedules", namespaced: false },
  BackupSet: { apiVersion: "ros.io/v1", plural: "backupsets", namespaced: false },
  BackupJob: { apiVersion: "ros.io/v1", plural: "backupjobs", namespaced: true },
  BackupRestore: { apiVersion: "ros.io/v1", plural: "backuprestores", namespaced: true },
  Job: { apiVersion: "batch/v1", plural: "jobs", namespaced: true },
  Pod: { apiVersion: "v1", plural: "pods", namespaced: true },
  PersistentVolumeClaim: { apiVersion: "v1", plural: "persistentvolumeclaims", namespaced: true },
  PersistentVolume: { apiVersion: "v1", plural: "persistentvolumes", namespaced: false },
  Secret: { apiVersion: "v1", plural: "secrets", namespaced: true },
  StorageClass: { apiVersion: "storage.k8s.io/v1", plural: "storageclasses", namespaced: false },
  VolumeSnapshot: { apiVersion: "snapshot.storage.k8s.io/v1", plural: "volumesnapshots", namespaced: true },
  VolumeSnapshotContent: { apiVersion: "snapshot.storage.k8s.io/v1", plural: "volumesnapshotcontents", namespaced: false },
  VolumeSnapshotClass: { apiVersion: "snapshot.storage.k8s.io/v1", plural: "volumesnapshotclasses", namespaced: false },
  Event: { apiVersion: "events.k8s.io/v1", plural: "events", namespaced: true },
} as const satisfies Record<string, KindInfo>;
export type KindName = keyof typeof kinds;

export function isKnownKind(kind: string): kind is KindName {
  return kind in kinds;
}

function groupPath(apiVersion: string): string {
  return apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
}

/** The collection path of a kind (in a namespace, or across all of them when namespace is undefined). */
export function collectionPath(kind: KindName, namespace?: string): string {
  const k = kinds[kind];
  return `${groupPath(k.apiVersion)}${k.namespaced && namespace ? `/namespaces/${namespace}` : ""}/${k.plural}`;
}

export function objectPath(kind: KindName, name: string, namespace?: string): string {
  return `${collectionPath(kind, namespace)}/${name}`;
}

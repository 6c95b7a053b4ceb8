// REST paths of the kinds Walle touches, without a discovery round-trip on every cold start.
import { API_VERSION } from "../api/constants.ts";
import type { ResourceKind } from "../api/parse.ts";
import { kindDefinition } from "../api/registry.ts";
export interface KindInfo {
  readonly apiVersion: string;
  readonly plural: string;
  readonly namespaced: boolean;
}

/** Walle's own kinds, from the same definitions their CRDs are generated from. */
function walle(kind: ResourceKind): KindInfo {
  const def = kindDefinition(kind);
  return { apiVersion: API_VERSION, plural: def.plural, namespaced: def.scope === "Namespaced" };
}

export const kinds = {
  BackupSchedule: walle("BackupSchedule"),
  BackupSet: walle("BackupSet"),
  BackupJob: walle("BackupJob"),
  BackupRestore: walle("BackupRestore"),
  Job: { apiVersion: "batch/v1", plural: "jobs", namespaced: true },
  Pod: { apiVersion: "v1", plural: "pods", namespaced: true },
  PersistentVolumeClaim: { apiVersion: "v1", plural: "persistentvolumeclaims", namespaced: true },
  PersistentVolume: { apiVersion: "v1", plural: "persistentvolumes", namespaced: false },
  Secret: { apiVersion: "v1", plural: "secrets", namespaced: true },
  ServiceAccount: { apiVersion: "v1", plural: "serviceaccounts", namespaced: true },
  ConfigMap: { apiVersion: "v1", plural: "configmaps", namespaced: true },
  StorageClass: { apiVersion: "storage.k8s.io/v1", plural: "storageclasses", namespaced: false },
  VolumeSnapshot: { apiVersion: "snapshot.storage.k8s.io/v1", plural: "volumesnapshots", namespaced: true },
  VolumeSnapshotContent: { apiVersion: "snapshot.storage.k8s.io/v1", plural: "volumesnapshotcontents", namespaced: false },
  VolumeSnapshotClass: { apiVersion: "snapshot.storage.k8s.io/v1", plural: "volumesnapshotclasses", namespaced: false },
  Event: { apiVersion: "events.k8s.io/v1", plural: "events", namespaced: true },
  Namespace: { apiVersion: "v1", plural: "namespaces", namespaced: false },
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

import { backupJobKind } from "./backup-job.ts";
import { backupRestoreKind } from "./backup-restore.ts";
import { backupScheduleKind } from "./backup-schedule.ts";
import { backupSetKind } from "./backup-set.ts";
import { API_VERSION } from "./constants.ts";
import type { KindDefinition } from "./kind.ts";
import type { ResourceKind } from "./parse.ts";

/** The four kinds, in the order their CRDs are written and listed. */
export const kinds: readonly KindDefinition[] = [backupScheduleKind, backupSetKind, backupJobKind, backupRestoreKind];

const byKind: Readonly<Record<ResourceKind, KindDefinition>> = {
  BackupSchedule: backupScheduleKind,
  BackupSet: backupSetKind,
  BackupJob: backupJobKind,
  BackupRestore: backupRestoreKind,
};

export function kindDefinition(kind: ResourceKind): KindDefinition {
  return byKind[kind];
}

/**
 * The REST path of a kind's collection, or of one object when `name` is given. A namespaced kind without a
 * namespace means all namespaces (list and watch only).
 */
export function resourcePath(kind: ResourceKind, namespace?: string, name?: string): string {
  const def = byKind[kind];
  if (def.scope === "Cluster" && namespace !== undefined) throw new Error(`${kind} is cluster-scoped: no namespace`);
  const scope = namespace === undefined ? "" : `/namespaces/${encodeURIComponent(namespace)}`;
  const object = name === undefined ? "" : `/${encodeURIComponent(name)}`;
  return `/apis/${API_VERSION}${scope}/${def.plural}${object}`;
}

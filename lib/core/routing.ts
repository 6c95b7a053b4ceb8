// Which Walle object an ApiServerSource event is about. A child (Job, Pod, PVC, VolumeSnapshot) re-drives the
// BackupJob it belongs to, found by Walle's labels (children in other namespaces) or its controller owner.
import { BackupJobPhase } from "../api/backup-job.ts";
import { ConditionReason, ConditionType } from "../api/conditions.ts";
import { ConditionStatus, Label } from "../api/constants.ts";
import { isTerminal } from "./backup-job.ts";
import { findCondition } from "./conditions.ts";

export type Target =
  | { readonly kind: "BackupJob"; readonly namespace: string; readonly name: string }
  | { readonly kind: "BackupRestore"; readonly namespace: string; readonly name: string }
  | { readonly kind: "BackupSet"; readonly name: string };

export interface EventObject {
  readonly apiVersion?: string;
  readonly kind: string;
  readonly status?: {
    readonly phase?: string;
    readonly observedGeneration?: number;
    readonly readyToUse?: boolean;
    /** A Job's count of ready pods. */
    readonly ready?: number;
    readonly error?: unknown;
    readonly conditions?: readonly { readonly type: string; readonly status: string; readonly reason?: string }[];
    /** A BackupSchedule's answer to its ros.io/backup-requested annotation. */
    readonly lastBackupRequest?: { readonly id?: string };
  };
  readonly metadata: {
    readonly name: string;
    readonly generation?: number;
    readonly namespace?: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly annotations?: Readonly<Record<string, string>>;
    readonly ownerReferences?: readonly { readonly apiVersion: string; readonly kind: string; readonly name: string; readonly controller?: boolean }[];
  };
}

export function targetOf(obj: EventObject): Target | undefined {
  const { name, namespace, labels, ownerReferences } = obj.metadata;
  if (obj.apiVersion === undefined || obj.apiVersion === "ros.io/v1") {
    switch (obj.kind) {
      case "BackupJob":
      case "BackupRestore":
        return namespace ? { kind: obj.kind, namespace, name } : undefined;
      case "BackupSet":
        return { kind: "BackupSet", name };
      case "BackupSchedule":
        return undefined; // the tick owns schedules (a run asked for by annotation aside: lib/app/walle.ts)
    }
  }
  const job = labels?.[Label.BackupJob];
  const restore = labels?.[Label.BackupRestore];
  const ownerNs = labels?.[Label.OwnerNamespace] ?? namespace;
  if (job && ownerNs) return { kind: "BackupJob", namespace: ownerNs, name: job };
  if (restore && ownerNs) return { kind: "BackupRestore", namespace: ownerNs, name: restore };
  const owner = ownerReferences?.find((o) => o.controller && o.apiVersion === "ros.io/v1");
  if (owner && namespace && (owner.kind === "BackupJob" || owner.kind === "BackupRestore")) {
    return { kind: owner.kind, namespace, name: owner.name };
  }
  return undefined;
}

/**
 * Whether a child's change can move its owner on. Most child events (a PVC being provisioned, a Job's counts
 * while it runs) cannot: skipping them saves the owner's re-read and a full observation each. What can: a
 * snapshot ready or failed, a worker Job with a running pod (its `ready` count) or finished, a restore's PVC
 * bound or released. Pods are not watched at all: their Job's counts say what Walle needs of them. Walle's own
 * objects always count.
 */
export function movesOwner(obj: EventObject, change: "add" | "update" | "delete"): boolean {
  const status = obj.status;
  switch (obj.kind) {
    case "VolumeSnapshot":
      return change !== "delete" && (status?.readyToUse === true || status?.error !== undefined);
    case "Job": {
      const ended = status?.conditions?.some((c) => c.status === "True" && (c.type === "Complete" || c.type === "Failed")) ?? false;
      return change !== "delete" && (ended || (status?.ready ?? 0) > 0);
    }
    case "Pod":
      return false;
    case "PersistentVolumeClaim":
      return obj.metadata.labels?.[Label.BackupRestore] !== undefined && (change === "delete" || status?.phase === "Bound");
    default:
      return true;
  }
}

const WAITING_ON_CHILDREN: readonly string[] = [BackupJobPhase.CreatingSnapshot, BackupJobPhase.WaitingBackup, BackupJobPhase.BackingUp];

/**
 * Whether an update of a BackupJob itself can move it on. Most are the echo of Walle's own status write: a
 * BackupJob waiting on a child (its snapshot, its worker) moves when the child does, and that comes as the
 * child's own event; one whose clean-up has begun is being finished by the instance that wrote that (a resync
 * finishes it should that instance die); a settled one never moves again. A spec change (generation ahead of
 * observedGeneration) always counts.
 */
export function updateMovesBackupJob(obj: EventObject): boolean {
  const status = obj.status;
  if (obj.kind !== "BackupJob" || !status?.phase) return true;
  if (obj.metadata.generation !== undefined && obj.metadata.generation !== status.observedGeneration) return true;
  const cleanUp = findCondition(status.conditions, ConditionType.CleanedUp);
  const endedAndCleaning = isTerminal(status.phase) && (cleanUp?.status === ConditionStatus.True || cleanUp?.reason === ConditionReason.Deleting);
  return !endedAndCleaning && !WAITING_ON_CHILDREN.includes(status.phase);
}

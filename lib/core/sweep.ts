// What a resync drives and what it sweeps, decided from lists alone. ApiServerSource loses events (docs/architecture.md, Events), so
// all in-flight work is driven one step; and a child of a BackupJob or BackupRestore that no longer exists, or
// has settled (ended and cleaned up), is one a stale instance made after the clean-up, and goes too.
import { BackupSetState } from "../api/backup-set.ts";
import { CREATED_BY, JobType, Label } from "../api/constants.ts";
import type { ObjectMeta } from "../api/parse.ts";
import { isSettled } from "./backup-job.ts";
import type { Action, KubeKind, ReadPlan } from "./decision.ts";
import type { ObjectSummary } from "./objects.ts";

/** The kinds a BackupJob or BackupRestore makes, which a sweep may delete. */
const CHILD_KINDS = ["Job", "PersistentVolumeClaim", "VolumeSnapshot", "VolumeSnapshotContent"] as const satisfies readonly KubeKind[];
type ChildKind = (typeof CHILD_KINDS)[number];
const API_VERSIONS: Record<ChildKind, string> = {
  Job: "batch/v1",
  PersistentVolumeClaim: "v1",
  VolumeSnapshot: "snapshot.storage.k8s.io/v1",
  VolumeSnapshotContent: "snapshot.storage.k8s.io/v1",
};

export interface ResyncObserved {
  readonly backupJobs?: readonly ObjectSummary[];
  readonly backupRestores?: readonly ObjectSummary[];
  readonly backupSets?: readonly ObjectSummary[];
  readonly Job?: readonly ObjectSummary[];
  readonly PersistentVolumeClaim?: readonly ObjectSummary[];
  readonly VolumeSnapshot?: readonly ObjectSummary[];
  readonly VolumeSnapshotContent?: readonly ObjectSummary[];
}

/**
 * The children of runs, by label (a restore's PVC in the target namespace is the user's result and carries no
 * job-type label, so it is never swept). They are listed before their owners: a child in the list was made
 * before the owners were listed, so an owner that exists is in that list, and a run that starts during the
 * resync never loses its first snapshot to the sweep.
 */
export function resyncReads(seen: Partial<ResyncObserved>): ReadPlan<ResyncObserved> {
  if (seen.Job === undefined) {
    const labelSelector = `${Label.CreatedBy}=${CREATED_BY},${Label.BackupJobType} in (${JobType.Backup},${JobType.Restore}),${Label.OwnerNamespace}`;
    return Object.fromEntries(CHILD_KINDS.map((kind) => [kind, { list: kind, labelSelector, summary: true }]));
  }
  if (seen.backupJobs !== undefined) return {};
  return {
    backupJobs: { list: "BackupJob", summary: true },
    backupRestores: { list: "BackupRestore", summary: true },
    backupSets: { list: "BackupSet", summary: true },
  };
}

export interface ResyncPlan {
  readonly backupJobs: readonly { namespace: string; name: string }[];
  readonly backupRestores: readonly { namespace: string; name: string }[];
  readonly backupSets: readonly string[];
  /** Deletes of orphaned children. */
  readonly sweep: readonly Action[];
}

const ref = (o: { metadata: ObjectMeta }) => ({ namespace: o.metadata.namespace ?? "", name: o.metadata.name ?? "" });
const key = (namespace: string | undefined, name: string | undefined) => `${namespace ?? ""}/${name ?? ""}`;

export function planResync(w: ResyncObserved): ResyncPlan {
  const jobs = (w.backupJobs ?? []).filter((j) => !isSettled(j.status));
  const restores = (w.backupRestores ?? []).filter((r) => !isSettled(r.status));
  const live = {
    [JobType.Backup]: new Set(jobs.map((j) => key(j.metadata.namespace, j.metadata.name))),
    [JobType.Restore]: new Set(restores.map((r) => key(r.metadata.namespace, r.metadata.name))),
  };
  const sweep: Action[] = [];
  for (const kind of CHILD_KINDS) {
    for (const child of w[kind] ?? []) {
      const labels = child.metadata.labels ?? {};
      const type = labels[Label.BackupJobType];
      if (type !== JobType.Backup && type !== JobType.Restore) continue;
      const owner = key(labels[Label.OwnerNamespace], labels[type === JobType.Backup ? Label.BackupJob : Label.BackupRestore]);
      if (live[type].has(owner)) continue;
      sweep.push({
        op: "delete",
        target: {
          apiVersion: API_VERSIONS[kind],
          kind,
          name: child.metadata.name ?? "",
          ...(child.metadata.namespace ? { namespace: child.metadata.namespace } : {}),
        },
      });
    }
  }
  return {
    backupJobs: jobs.map(ref),
    backupRestores: restores.map(ref),
    backupSets: (w.backupSets ?? []).filter((s) => !s.status?.state || s.status.state === BackupSetState.Running).map((s) => s.metadata.name ?? ""),
    sweep,
  };
}

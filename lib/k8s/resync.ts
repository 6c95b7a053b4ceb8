// Resync: ApiServerSource loses events (DESIGN §4), so this lists all in-flight work and drives each item one
// step, and deletes what a BackupJob left behind in other namespaces once it is gone.
import { BackupJobPhase } from "../api/backup-job.ts";
import { CREATED_BY, JobType, Label } from "../api/constants.ts";
import { CLEANED_UP } from "../core/backup-job.ts";
import { perform } from "./actions.ts";
import { driveBackupJob, type DriverContext } from "./backup-job-driver.ts";
import { driveBackupRestore } from "./backup-restore-driver.ts";
import { driveBackupSet } from "./backup-set-driver.ts";
import { collectionPath, type KindName } from "./paths.ts";

interface Listed {
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  status?: { phase?: string; state?: string; conditions?: { type: string; status: string }[] };
}

export interface ResyncReport {
  backupJobs: number;
  backupRestores: number;
  backupSets: number;
  orphansDeleted: number;
  errors: string[];
}

const settled = (o: Listed) =>
  (o.status?.phase === BackupJobPhase.Finished || o.status?.phase === BackupJobPhase.Failed) &&
  o.status.conditions?.some((c) => c.type === CLEANED_UP && c.status === "True");

export async function resync(ctx: DriverContext): Promise<ResyncReport> {
  const report: ResyncReport = { backupJobs: 0, backupRestores: 0, backupSets: 0, orphansDeleted: 0, errors: [] };
  const [jobs, sets, restores] = await Promise.all([
    ctx.api.get<{ items: Listed[] }>(collectionPath("BackupJob")),
    ctx.api.get<{ items: Listed[] }>(collectionPath("BackupSet")),
    ctx.api.get<{ items: Listed[] }>(collectionPath("BackupRestore")),
  ]);
  for (const br of restores.items.filter((r) => !settled(r))) {
    try {
      await driveBackupRestore(ctx, br.metadata.namespace ?? "", br.metadata.name);
      report.backupRestores++;
    } catch (err) {
      report.errors.push(`BackupRestore ${br.metadata.namespace}/${br.metadata.name}: ${String(err)}`);
    }
  }
  for (const bj of jobs.items.filter((j) => !settled(j))) {
    try {
      await driveBackupJob(ctx, bj.metadata.namespace ?? "", bj.metadata.name);
      report.backupJobs++;
    } catch (err) {
      report.errors.push(`BackupJob ${bj.metadata.namespace}/${bj.metadata.name}: ${String(err)}`);
    }
  }
  for (const set of sets.items.filter((s) => !s.status?.state || s.status.state === "Running")) {
    try {
      await driveBackupSet(ctx, set.metadata.name);
      report.backupSets++;
    } catch (err) {
      report.errors.push(`BackupSet ${set.metadata.name}: ${String(err)}`);
    }
  }
  // Children may exist only while their owner is in flight: once it is settled (ended and cleaned up), any child
  // left is one a stale instance made after the cleanup, and goes too.
  const keys = (items: Listed[]) => new Set(items.filter((o) => !settled(o)).map((o) => `${o.metadata.namespace}/${o.metadata.name}`));
  report.orphansDeleted =
    (await deleteOrphans(ctx, JobType.Backup, Label.BackupJob, keys(jobs.items))) +
    (await deleteOrphans(ctx, JobType.Restore, Label.BackupRestore, keys(restores.items)));
  return report;
}

/**
 * Children of BackupJobs or BackupRestores that no longer exist or have settled (the garbage collector takes a
 * deleted owner's same-namespace children too). A restore's PVC in the target namespace is the user's result and
 * carries no job-type label, so it is never swept.
 */
async function deleteOrphans(ctx: DriverContext, type: JobType, ownerLabel: string, existing: ReadonlySet<string>): Promise<number> {
  const selector = `${Label.CreatedBy}=${CREATED_BY},${Label.BackupJobType}=${type},${Label.OwnerNamespace}`;
  const kindsToSweep: KindName[] = ["Job", "PersistentVolumeClaim", "VolumeSnapshot", "VolumeSnapshotContent"];
  let deleted = 0;
  for (const kind of kindsToSweep) {
    const list = await ctx.api.get<{ items: Listed[] }>(collectionPath(kind), { labelSelector: selector });
    for (const o of list.items) {
      const owner = `${o.metadata.labels?.[Label.OwnerNamespace]}/${o.metadata.labels?.[ownerLabel]}`;
      if (existing.has(owner)) continue;
      const apiVersion = kind === "Job" ? "batch/v1" : kind === "PersistentVolumeClaim" ? "v1" : "snapshot.storage.k8s.io/v1";
      await perform(ctx.api, { op: "delete", target: { apiVersion, kind, name: o.metadata.name, namespace: o.metadata.namespace } });
      deleted++;
    }
  }
  return deleted;
}

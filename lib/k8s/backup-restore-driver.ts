// Drives one BackupRestore one step: observe what its phase needs, decide (pure), act, write status once.
import type { BackupRestoreStatus } from "../api/backup-restore.ts";
import { Label } from "../api/constants.ts";
import { backupRestoreSchema } from "../api/parse.ts";
import { backupRestoreReads, decideBackupRestore, restoreWorkerNamespace, targetPvcName, type BackupRestoreWorld } from "../core/backup-restore.ts";
import { restoreChildNames } from "../core/names.ts";
import { jobSchema, podSchema, pvcSchema, pvSchema } from "../core/objects.ts";
import { getOrNull, list, read } from "./actions.ts";
import { applyDecision, type DriverContext, type DriveResult } from "./backup-job-driver.ts";
import { collectionPath, objectPath } from "./paths.ts";

export async function driveBackupRestore(ctx: DriverContext, namespace: string, name: string): Promise<DriveResult> {
  const { api, config } = ctx;
  const path = objectPath("BackupRestore", name, namespace);
  const raw = await getOrNull<unknown>(api, path);
  if (raw === null) return { found: false, changed: false };
  const br = backupRestoreSchema.parse(raw);
  if (br.metadata.deletionTimestamp) return { found: true, changed: false, phase: br.status?.phase };
  const status: BackupRestoreStatus = br.status ?? {};
  const restore = { namespace, name, uid: br.metadata.uid ?? "", generation: br.metadata.generation };
  const workerNs = restoreWorkerNamespace(br.spec, config);
  const cross = workerNs !== namespace;
  const reads = backupRestoreReads(status, br.spec, cross);
  const names = restoreChildNames(restore);
  const want = (k: keyof BackupRestoreWorld) => reads.has(k);
  const target = targetPvcName(br.spec);

  const [targetPvc, pods, stagingPvc, workerJob, labelledPvs] = await Promise.all([
    want("targetPvc") ? read(api, pvcSchema, objectPath("PersistentVolumeClaim", target, namespace)) : undefined,
    want("podsUsingTarget") ? list(api, podSchema, collectionPath("Pod", namespace)) : undefined,
    want("stagingPvc") ? read(api, pvcSchema, objectPath("PersistentVolumeClaim", names.stagingPvc, workerNs)) : undefined,
    want("workerJob") ? read(api, jobSchema, objectPath("Job", names.job, workerNs)) : undefined,
    want("handoverPv") ? list(api, pvSchema, collectionPath("PersistentVolume"), `${Label.BackupRestore}=${name},${Label.OwnerNamespace}=${namespace}`) : undefined,
  ]);
  // The volume to hand over: labelled once the handover began, else the staging PVC's.
  const stagingVolume = stagingPvc?.spec.volumeName;
  const handoverPv = labelledPvs?.[0] ?? (want("handoverPv") && stagingVolume ? await read(api, pvSchema, objectPath("PersistentVolume", stagingVolume)) : want("handoverPv") ? null : undefined);
  const workerPods = want("workerPods") && workerJob ? await list(api, podSchema, collectionPath("Pod", workerNs), `job-name=${names.job}`) : undefined;

  const world: BackupRestoreWorld = {
    restore,
    spec: br.spec,
    status,
    targetPvc,
    podsUsingTarget: pods?.filter((p) => p.spec.volumes?.some((v) => v.persistentVolumeClaim?.claimName === target)),
    stagingPvc,
    handoverPv,
    workerJob,
    workerPods,
  };
  const decision = decideBackupRestore(world, config, ctx.now());
  const changed = await applyDecision(ctx, { kind: "BackupRestore", namespace, name, uid: br.metadata.uid, resourceVersion: br.metadata.resourceVersion }, br.status ?? {}, decision);
  return { found: true, changed, phase: decision.status.phase };
}

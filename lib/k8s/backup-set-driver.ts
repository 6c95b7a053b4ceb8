// Aggregates one BackupSet from its BackupJobs: one LIST, one status write when it changed.
import { backupSetSchema } from "../api/parse.ts";
import { decideBackupSet } from "../core/backup-set.ts";
import { selectorString } from "../core/selectors.ts";
import { getOrNull, recordEvent, writeStatus } from "./actions.ts";
import type { DriverContext, DriveResult } from "./backup-job-driver.ts";
import { collectionPath, objectPath } from "./paths.ts";

export async function driveBackupSet(ctx: DriverContext, name: string): Promise<DriveResult> {
  const path = objectPath("BackupSet", name);
  const raw = await getOrNull<unknown>(ctx.api, path);
  if (raw === null) return { found: false, changed: false };
  const set = backupSetSchema.parse(raw);
  if (set.status?.state && set.status.state !== "Running") return { found: true, changed: false, phase: set.status.state };
  const jobs = await ctx.api.get<{ items: { status?: { phase?: string } }[] }>(collectionPath("BackupJob"), {
    labelSelector: selectorString(set.spec.selector),
  });
  const decision = decideBackupSet(set.status, jobs.items.map((j) => j.status?.phase), ctx.now(), set.metadata.generation);
  const changed = await writeStatus(ctx.api, path, set.status ?? {}, decision.status, set.metadata.resourceVersion);
  // BackupSets are cluster-scoped; their Events go to the install namespace, where `kubectl events` finds them.
  const regarding = { apiVersion: "ros.io/v1", kind: "BackupSet", name, uid: set.metadata.uid, namespace: ctx.config.installNamespace };
  for (const e of decision.events) await recordEvent(ctx.api, regarding, e, ctx.controller, ctx.now());
  return { found: true, changed, phase: decision.status.state };
}

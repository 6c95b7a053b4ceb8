// backup: the mounted snapshot of one PVC into the repository, as one restic snapshot.
import { readdir } from "node:fs/promises";
import { backupArgs } from "../../../lib/restic/args.ts";
import { BackupSummary } from "../../../lib/restic/messages.ts";
import type { BackupStats } from "../../../lib/restic/result.ts";
import type { BackupConfig } from "../config.ts";
import { formatBytes } from "../../../lib/format.ts";
import { judge, resultOf, runCreatingRepository, shortId, type CommandResult, type WorkerContext } from "./shared.ts";

export async function backup(config: BackupConfig, ctx: WorkerContext): Promise<CommandResult> {
  const what = `PVC ${config.owner.namespace}/${config.owner.pvc}`;
  const entries = await sourceEntries(config.sourcePath);
  if (entries === undefined) {
    const message = `SOURCE_PATH ${config.sourcePath} is not a readable directory; was the snapshot volume mounted there?`;
    return { reason: "InvalidConfig", message };
  }
  if (entries.length === 0) {
    return { reason: "EmptySource", message: `The volume of ${what} is empty; no snapshot was made.` };
  }

  ctx.log.info({ repository: config.repository, host: config.host, owner: config.owner }, `Backing up ${what}.`);
  const progress = ctx.progress("backup");
  const { host, owner, sourcePath, snapshotTime: time, lockWait } = config;
  const run = await runCreatingRepository(
    {
      command: "backup",
      args: backupArgs({ host, owner, sourcePath, time, lockWait }),
      cwd: sourcePath,
      onProgress: (p) => progress.report(p),
    },
    config,
    ctx,
  );
  await progress.close();

  const verdict = judge(run, config);
  const summary = BackupSummary.safeParse(run.summary);
  if (!summary.success || !summary.data.snapshot_id) return resultOf(run, verdict);
  const stats = statsOf(summary.data, run.facts.errorCount);
  const snapshotId = summary.data.snapshot_id;
  const done = `Backed up ${what} as snapshot ${shortId(snapshotId)}: ${describe(stats)}.`;
  return {
    ...resultOf(run, verdict),
    message: verdict.reason === "Completed" ? done : `${done} ${verdict.message}`,
    snapshotId,
    backup: stats,
  };
}

/**
 * The volume's entries, leaving out ext4's lost+found, which the backup excludes too (args.ts): a freshly
 * formatted volume holds only that, and is empty to its user. Undefined when the path is not a readable directory.
 */
async function sourceEntries(sourcePath: string): Promise<string[] | undefined> {
  try {
    return (await readdir(sourcePath)).filter((name) => name !== "lost+found");
  } catch {
    return undefined;
  }
}

function statsOf(s: BackupSummary, unreadable: number | undefined): BackupStats {
  return {
    filesNew: s.files_new,
    filesChanged: s.files_changed,
    filesUnmodified: s.files_unmodified,
    dataAdded: s.data_added,
    bytesProcessed: s.total_bytes_processed,
    durationSeconds: Math.round(s.total_duration * 1000) / 1000,
    ...(unreadable ? { unreadable } : {}),
  };
}

function describe(s: BackupStats): string {
  const files = s.filesNew + s.filesChanged + s.filesUnmodified;
  return (
    `${files} files (${s.filesNew} new, ${s.filesChanged} changed), ${formatBytes(s.dataAdded)} added ` +
    `of ${formatBytes(s.bytesProcessed)} processed in ${s.durationSeconds.toFixed(1)} s`
  );
}

// restore: one snapshot into the target directory (the mounted target PVC).
import { restoreArgs, snapshotsArgs } from "../../../lib/restic/args.ts";
import { RestoreSummary } from "../../../lib/restic/messages.ts";
import { selectSnapshot, SnapshotList } from "../../../lib/restic/snapshots.ts";
import type { RestoreConfig, RestoreSource } from "../config.ts";
import { formatBytes } from "../../../lib/format.ts";
import { judge, parseJson, resultOf, shortId, type CommandResult, type WorkerContext } from "./shared.ts";

export async function restore(config: RestoreConfig, ctx: WorkerContext): Promise<CommandResult> {
  const chosen = await chooseSnapshot(config, ctx);
  if ("reason" in chosen) return chosen;

  ctx.log.info({ snapshot: chosen.id, target: config.targetPath, include: config.include }, `Restoring snapshot ${shortId(chosen.id)}.`);
  const progress = ctx.progress("restore");
  const run = await ctx.restic.run({
    command: "restore",
    args: restoreArgs({
      snapshotId: chosen.id,
      targetPath: config.targetPath,
      include: config.include,
      deleteOthers: config.deleteOthers,
      lockWait: config.lockWait,
    }),
    onProgress: (p) => progress.report(p),
  });
  await progress.close();

  const verdict = judge(run, config);
  if (verdict.reason !== "Completed") return resultOf(run, verdict);
  const summary = RestoreSummary.safeParse(run.summary ?? {});
  const stats = summary.success ? { files: summary.data.files_restored, bytes: summary.data.bytes_restored } : undefined;
  const amount = stats ? ` (${stats.files} files, ${formatBytes(stats.bytes)})` : "";
  return {
    ...resultOf(run, verdict),
    message: `Restored snapshot ${shortId(chosen.id)}${amount} into ${config.targetPath}.`,
    ...(/^[0-9a-f]{64}$/.test(chosen.id) ? { snapshotId: chosen.id } : {}),
    ...(stats ? { restore: stats } : {}),
  };
}

/**
 * The snapshot to restore. An id is taken as given (restic resolves a short one, and says so when none matches).
 * "latest" lists the PVC's snapshots from this cluster and picks here, because restic has no "latest before".
 */
async function chooseSnapshot(config: RestoreConfig, ctx: WorkerContext): Promise<{ id: string } | CommandResult> {
  const source = config.source;
  if (source.kind === "id") return { id: source.id };
  const run = await ctx.restic.run({ command: "snapshots", args: snapshotsArgs({ host: source.host, owner: source }), keepStdout: true });
  const verdict = judge(run, config);
  if (verdict.reason !== "Completed") return resultOf(run, verdict);
  const list = SnapshotList.safeParse(parseJson(run.stdout.join("\n")));
  if (!list.success) {
    return { ...resultOf(run, verdict), reason: "ResticFailed", message: "restic snapshots printed a list the worker could not read." };
  }
  const found = selectSnapshot(list.data, source.before);
  if (!found) return { ...resultOf(run, verdict), reason: "NoSnapshot", message: noSnapshotMessage(source) };
  ctx.log.info({ snapshot: found.id, time: found.time }, `Chose snapshot ${shortId(found.id)} taken at ${found.time}.`);
  return { id: found.id };
}

function noSnapshotMessage(source: Extract<RestoreSource, { kind: "latest" }>): string {
  const when = source.before ? ` taken at or before ${source.before.toISOString()}` : "";
  return `There is no snapshot of PVC ${source.namespace}/${source.pvc} from cluster ${source.host}${when}.`;
}

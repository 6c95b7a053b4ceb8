// snapshots: a PVC's snapshots in the repository, newest first, for kubectl walle snapshots. The password stays
// in the cluster: this worker reads the repository, and only ids, times, hosts and sizes leave it, in the result.
import { snapshotsArgs } from "../../../lib/restic/args.ts";
import { listedSnapshotsLimit } from "../../../lib/restic/result.ts";
import { newestFirst, SnapshotList } from "../../../lib/restic/snapshots.ts";
import type { SnapshotsConfig } from "../config.ts";
import { judge, parseJson, resultOf, shortId, type CommandResult, type WorkerContext } from "./shared.ts";

export async function snapshots(config: SnapshotsConfig, ctx: WorkerContext): Promise<CommandResult> {
  const { owner, host } = config;
  ctx.log.info({ repository: config.repository, pvc: owner.pvc, namespace: owner.namespace, host }, "Listing snapshots.");
  const run = await ctx.restic.run({ command: "snapshots", args: snapshotsArgs({ ...(host ? { host } : {}), owner, noLock: true }), keepStdout: true });
  const verdict = judge(run, config);
  if (verdict.reason !== "Completed") return resultOf(run, verdict);
  const parsed = SnapshotList.safeParse(parseJson(run.stdout.join("\n")));
  if (!parsed.success) return { ...resultOf(run, verdict), reason: "ResticFailed", message: "restic snapshots printed a list the worker cannot read." };
  const all = newestFirst(parsed.data);
  const listed = all.slice(0, listedSnapshotsLimit).map((s) => {
    const bytes = s.summary?.total_bytes_processed;
    return { id: shortId(s.id), time: s.time, host: s.hostname, ...(bytes !== undefined ? { bytes } : {}) };
  });
  const of = `PVC ${owner.namespace}/${owner.pvc}${host ? ` from cluster ${host}` : ""}`;
  const message =
    all.length === 0
      ? `There are no snapshots of ${of}.`
      : all.length > listed.length
        ? `${all.length} snapshots of ${of}; the newest ${listed.length} are listed.`
        : `${all.length} snapshot${all.length === 1 ? "" : "s"} of ${of}.`;
  return { ...resultOf(run, verdict), message, snapshots: listed, ...(all.length > listed.length ? { snapshotsTotal: all.length } : {}) };
}

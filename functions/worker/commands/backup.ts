// backup: the mounted snapshot of one PVC into the repository, as one restic snapshot.
import { readFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { backupArgs, probeArgs } from "../../../lib/restic/args.ts";
import { BackupSummary, type Progress } from "../../../lib/restic/messages.ts";
import type { BackupStats } from "../../../lib/restic/result.ts";
import type { BackupConfig } from "../config.ts";
import { formatBytes } from "../../../lib/format.ts";
import { StreamTrailer } from "../../../lib/api/constants.ts";
import type { ResticInvocation } from "../restic.ts";
import { judge, parseJson, resultOf, runCreatingRepository, shortId, type CommandResult, type WorkerContext } from "./shared.ts";

export async function backup(config: BackupConfig, ctx: WorkerContext): Promise<CommandResult> {
  if (config.stream) return backupStream(config, config.stream, ctx);
  const what = `PVC ${config.owner.namespace}/${config.owner.pvc}`;
  const sourcePath = config.sourcePath ?? "";
  const entries = await sourceEntries(sourcePath);
  if (entries === "unreadable") {
    return { reason: "Incomplete", message: `The worker may not read the top directory of ${what} (permission denied), so no snapshot was made.` };
  }
  if (entries === undefined) {
    const message = `SOURCE_PATH ${sourcePath} is not a readable directory; was the snapshot volume mounted there?`;
    return { reason: "InvalidConfig", message };
  }
  if (entries.length === 0) {
    return { reason: "EmptySource", message: `The volume of ${what} is empty; no snapshot was made.` };
  }

  ctx.log.info({ repository: config.repository, host: config.host, owner: config.owner }, `Backing up ${what}.`);
  const { host, owner, snapshotTime: time, lockWait } = config;
  return backedUp(what, { command: "backup", args: backupArgs({ host, owner, sourcePath, time, lockWait }), cwd: sourcePath }, config, ctx);
}

/**
 * A command's output (`backupCommand`), fetched from the reconcile function, which runs the command in the
 * application's container (the worker has no API token), into restic backup --stdin. The output is saved only when
 * the command ended with 0: otherwise restic is stopped before its input ends, and it saves nothing.
 */
function backupStream(config: BackupConfig, stream: NonNullable<BackupConfig["stream"]>, ctx: WorkerContext): Promise<CommandResult> {
  const what = `the backup command's output of PVC ${config.owner.namespace}/${config.owner.pvc}`;
  ctx.log.info({ repository: config.repository, host: config.host, owner: config.owner, file: stream.fileName }, `Backing up ${what}.`);
  const { host, owner, snapshotTime: time, lockWait } = config;
  const feed = (stdin: NodeJS.WritableStream) => fetchStream(stream.url, config.progress.tokenFile ?? "", stdin);
  return backedUp(what, { command: "backup", args: backupArgs({ host, owner, stdinFileName: stream.fileName, time, lockWait }), feed }, config, ctx);
}

/** Runs the backup (creating the repository if it may) and says what it made. */
async function backedUp(what: string, inv: ResticInvocation, config: BackupConfig, ctx: WorkerContext): Promise<CommandResult> {
  // A command's output can be read only once (the command runs while its stream is fetched), so backup --stdin
  // must not be the run that finds the repository missing: the repository is made ready first, created or waited
  // for as any run's, with a probe that reads nothing but its config; then the backup runs exactly once.
  if (inv.feed) {
    const probe = await runCreatingRepository({ command: "cat", args: probeArgs(), keepStdout: true }, config, ctx);
    const ready = judge(probe, config);
    if (ready.reason !== "Completed") return resultOf(probe, ready);
  }
  const progress = ctx.progress("backup");
  const tracked = { ...inv, onProgress: (p: Progress) => progress.report(p) };
  const run = inv.feed ? await ctx.restic.run(tracked) : await runCreatingRepository(tracked, config, ctx);
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
 * GETs the stream of a command's output with the pod's token and writes it into `stdin`; resolves once it ended
 * and its trailer says the command exited 0, rejects with what went wrong otherwise. restic gone first (its stdin
 * closed): the request is dropped, and the function stops the command.
 */
function fetchStream(url: string, tokenFile: string, stdin: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    const token = readFileSync(tokenFile, "utf8").trim();
    const target = new URL(url);
    const get = target.protocol === "https:" ? https.get : http.get;
    const req = get(target, { headers: { authorization: `Bearer ${token}` } }, (res) => {
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8");
          const said = (parseJson(body) as { error?: string } | undefined)?.error ?? body.slice(0, 300);
          reject(new Error(`The reconcile function did not stream the command's output (HTTP ${res.statusCode}): ${said}`));
        });
        return;
      }
      res.pipe(stdin as NodeJS.WritableStream, { end: false });
      res.on("aborted", () => reject(new Error("The stream of the command's output broke off before its end.")));
      res.on("error", (err) => reject(new Error(`The stream of the command's output failed: ${err.message}`)));
      res.on("end", () => {
        const code = res.trailers[StreamTrailer.ExitCode];
        const error = decodeURIComponent(res.trailers[StreamTrailer.Error] ?? "");
        if (code === "0") resolve();
        else reject(new Error(`The backup command ${code ? `exited ${code}` : "did not end"}${error ? `: ${error}` : ""}.`));
      });
    });
    req.on("error", (err) => reject(new Error(`The stream of the command's output could not be fetched: ${err.message}`)));
    (stdin as NodeJS.WritableStream & { once(e: "close", f: () => void): void }).once("close", () => req.destroy());
  });
}

/**
 * The volume's entries, leaving out ext4's lost+found, which the backup excludes too (args.ts): a freshly
 * formatted volume holds only that, and is empty to its user. Undefined when the path is not a readable directory.
 */
/** The entries of the source, "unreadable" when it is there but the worker may not list it, undefined when it is not there. */
async function sourceEntries(sourcePath: string): Promise<string[] | "unreadable" | undefined> {
  try {
    return (await readdir(sourcePath)).filter((name) => name !== "lost+found");
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EACCES" ? "unreadable" : undefined;
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

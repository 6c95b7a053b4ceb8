// The restic command lines the worker runs, built without running anything (as k8up's restic/cli/flags.go does),
// so each can be checked in a table.
//
// No secret ever appears here: the repository and its credentials reach restic through its environment, as
// restic documents them, never as `-r` or `--password` arguments that any process on the node could read.
import path from "node:path";
import { keepFlags, type Retention } from "./retention.ts";
import { resticTime } from "./time.ts";

/** What a snapshot belongs to. Tags are `key=value`, so a PVC named like a namespace cannot be mistaken for it. */
export interface SnapshotOwner {
  pvc: string;
  namespace: string;
  schedule?: string;
}

export function snapshotTags(owner: SnapshotOwner): string[] {
  const tags = [`pvc=${owner.pvc}`, `namespace=${owner.namespace}`];
  if (owner.schedule) tags.push(`schedule=${owner.schedule}`);
  return tags;
}

/** One `--tag` filter value: restic matches a snapshot when it has every tag of the comma-separated list. */
function tagFilter(tags: readonly string[]): string[] {
  return tags.length > 0 ? ["--tag", tags.join(",")] : [];
}

function retryLock(wait: string | undefined): string[] {
  return wait ? ["--retry-lock", wait] : [];
}

export interface BackupArgs {
  host: string;
  owner: SnapshotOwner;
  /** The absolute source directory; restic runs inside it and backs up `.`. */
  sourcePath?: string;
  /** Instead of a directory: stdin, saved as this file at the snapshot's root (`--stdin --stdin-filename`). */
  stdinFileName?: string;
  time?: Date;
  lockWait?: string;
}

/**
 * `restic backup` of the current directory, which must be the source: the snapshot then holds the volume's files
 * at its root, and a restore lands them directly in the target.
 *
 * - `--host`: the cluster name. The pod name is random and would defeat parent detection and forget's grouping.
 * - `--group-by host,tags`: every PVC is mounted at the same path, so restic's default parent (same host and
 *   paths) would be another PVC's snapshot; grouping by tags picks this PVC's previous snapshot, which is what
 *   makes the second backup incremental without rereading every file.
 * - `--exclude <source>/lost+found`: ext4's lost+found is root-only (mode 0700); a non-root worker would turn every
 *   backup of an ext4 volume into a warning for a directory that holds no user data.
 */
export function backupArgs(o: BackupArgs): string[] {
  return [
    "backup",
    "--json",
    ...retryLock(o.lockWait),
    "--host",
    o.host,
    "--group-by",
    "host,tags",
    ...tagFilter(snapshotTags(o.owner)),
    ...(o.time ? ["--time", resticTime(o.time)] : []),
    ...(o.stdinFileName !== undefined
      ? ["--stdin", "--stdin-filename", o.stdinFileName]
      : ["--exclude", path.posix.join(o.sourcePath ?? ".", "lost+found"), "."]),
  ];
}

export function initArgs(): string[] {
  return ["init", "--json"];
}

/** Whether the repository is there and opens with the password, reading nothing but its config. */
export function probeArgs(): string[] {
  return ["cat", "config"];
}

/**
 * The snapshots of one PVC (taken by one cluster, when `host` is given), to restore one or to list them; a list
 * for a person reads without a lock (`noLock`), so a listing killed midway leaves nothing behind.
 */
export function snapshotsArgs(o: { host?: string; owner: Pick<SnapshotOwner, "pvc" | "namespace">; noLock?: boolean }): string[] {
  return ["snapshots", "--json", ...(o.noLock ? ["--no-lock"] : []), ...(o.host ? ["--host", o.host] : []), ...tagFilter(snapshotTags(o.owner))];
}

export interface RestoreArgs {
  snapshotId: string;
  targetPath: string;
  include?: readonly string[];
  /** Delete what the target holds beyond the snapshot. */
  deleteOthers?: boolean;
  lockWait?: string;
}

/**
 * restic restores modes, times, symlinks, hard links and extended attributes itself, and owners when it runs as
 * root (or with CAP_CHOWN).
 *
 * - `--sparse`: runs of zeros become holes again, so a sparse file (a VM image, a database's preallocated file)
 *   takes the space it took, not its full length.
 * - `--delete`: the target ends up holding exactly the snapshot. The volume's own `/lost+found` is excluded, as
 *   the backup excluded it, so it is neither restored nor deleted; with `--include`, only included paths are
 *   deleted.
 */
export function restoreArgs(o: RestoreArgs): string[] {
  return [
    "restore",
    o.snapshotId,
    "--json",
    ...retryLock(o.lockWait),
    "--target",
    o.targetPath,
    "--sparse",
    // restic refuses --exclude beside --include; with includes, only what they select is deleted anyway.
    ...(o.deleteOthers ? ["--delete", ...(o.include?.length ? [] : ["--exclude", "/lost+found"])] : []),
    ...(o.include ?? []).flatMap((p) => ["--include", p]),
  ];
}

export interface ForgetArgs {
  host: string;
  /** Only this schedule's snapshots, when set; another schedule may share the repository with another policy. */
  schedule?: string;
  policy: Retention;
  lockWait?: string;
}

/**
 * `restic forget`, limited to this cluster's snapshots (another cluster may share the repository) and grouped by
 * host and tags, so the policy applies to each PVC's snapshots on its own.
 */
export function forgetArgs(o: ForgetArgs): string[] {
  return [
    "forget",
    "--json",
    ...retryLock(o.lockWait),
    "--group-by",
    "host,tags",
    "--host",
    o.host,
    ...tagFilter(o.schedule ? [`schedule=${o.schedule}`] : []),
    ...keepFlags(o.policy),
  ];
}

export function pruneArgs(o: { lockWait?: string } = {}): string[] {
  return ["prune", "--json", ...retryLock(o.lockWait)];
}

/** `--read-data-subset` (`1/10`, `5%`, `500M`) also reads that part of the data, not only the structure. */
export function checkArgs(o: { readDataSubset?: string; lockWait?: string } = {}): string[] {
  return ["check", "--json", ...retryLock(o.lockWait), ...(o.readDataSubset ? ["--read-data-subset", o.readDataSubset] : [])];
}

/**
 * Without `--remove-all`, restic removes only the locks it calls stale (30 minutes old, or of a gone process on its
 * own host); with it, every lock (lib/restic/locks.ts decides when that is safe).
 */
export function unlockArgs(o: { removeAll?: boolean } = {}): string[] {
  return ["unlock", "--json", ...(o.removeAll ? ["--remove-all"] : [])];
}

/** The ids of the repository's locks, one per line; without a lock of its own, so a held repository can be read. */
export function listLocksArgs(): string[] {
  return ["list", "locks", "--no-lock"];
}

/** One lock's content as JSON: time, exclusive, hostname, username, pid. */
export function catLockArgs(id: string): string[] {
  return ["cat", "lock", id, "--no-lock"];
}

/**
 * restic's environment: the worker's own (the repository Secret's variables arrive there through envFrom), with
 * TZ=UTC because `--time` and forget's day and week boundaries are read in restic's local zone, and one status
 * line a second instead of restic's default 60, which is plenty for progress reported every few seconds.
 */
export function resticEnvironment(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  out.TZ = "UTC";
  out.RESTIC_PROGRESS_FPS = env.RESTIC_PROGRESS_FPS ?? "1";
  return out;
}

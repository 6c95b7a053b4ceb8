// The worker's configuration: its environment, parsed once with zod into a typed config per command.
//
// A missing or invalid setting ends the worker before restic runs, with a message that names the variable.
//
// Environment (names from the original Walle kept where it had them):
//
//   restic's repository variables, from the repository Secret alone: the worker Job's envFrom gives each key of it
//   as SECRET_<key>, and main.ts takes back only restic's repository and backend variables (lib/restic/secret-env.ts;
//   any other key of the Secret, and a repository variable set outside it, fails the worker naming it). They are
//   passed to restic untouched and never put on its command line: RESTIC_REPOSITORY or RESTIC_REPOSITORY_FILE (one
//   required); RESTIC_PASSWORD, RESTIC_PASSWORD_FILE or RESTIC_PASSWORD_COMMAND (one required); AWS_*, B2_*,
//   AZURE_*, GOOGLE_*, OS_*, RESTIC_REST_USERNAME/PASSWORD, and the rest of restic's documented repository variables.
//   INITIALIZE_REPO       true/false (yes/no, 1/0, on/off); create the repository when it does not exist (backup,
//                         prune, check). Usually set in the repository Secret, as in the original (one of the three
//                         settings a Secret may hold, with UNREACHABLE_TIMEOUT and LOCK_WAIT; Walle's own setting of
//                         it wins). Default false.
//
//   For all commands:
//   CLUSTER_NAME          restic's --host for every snapshot: the cluster, never the random pod name. Required
//                         for backup, prune and a restore that has to find its snapshot.
//   RESTIC_BINARY         the restic executable. Default: `restic` on the PATH.
//   REPOSITORY_WAIT       when the repository does not exist and INITIALIZE_REPO is false, how long to wait for
//                         another worker to create it (a Go duration). Walle sets it, with INITIALIZE_REPO=false,
//                         on all but one worker of a schedule's first run, so `restic init` runs once. Default 0s.
//   LOCK_WAIT             how long to wait for a lock another restic holds (restic's --retry-lock), a Go duration
//                         such as 5m. Default 5m.
//   UNREACHABLE_TIMEOUT   how long restic may keep retrying a repository it cannot reach before the worker stops
//                         it and reports Unreachable (restic alone would retry for 15 minutes). Default 2m.
//   TERMINATION_MESSAGE_PATH  where the result goes (the pod's terminationMessagePath). Default /dev/termination-log.
//   LOG_LEVEL             pino level: fatal, error, warn, info, debug or trace. Default info.
//   PROGRESS_SINK_URL     an http(s) URL; progress is POSTed there as binary-mode CloudEvents, best effort.
//   PROGRESS_INTERVAL     the least time between two progress reports (log and sink), a Go duration. Default 10s.
//   PROGRESS_SUBJECT      the CloudEvents `subject` of progress events, e.g. the BackupJob's API path, so the
//                         receiver knows which object to update.
//   PROGRESS_TOKEN_FILE   a file holding the token progress is sent with (`Authorization: Bearer`), read afresh for
//                         each report: Walle projects one bound to the pod, for the progress audience only.
//   REPOSITORY_SHOWN_AS   how messages and logs name the repository instead of by its location, e.g.
//                         `Secret walle-system/team-a`; its host, user and path are then masked wherever they appear.
//                         Walle sets it for a tenant's run in a shared repository, whose result the tenant sees.
//
//   backup:
//   SOURCE_PATH           absolute path of the mounted snapshot; restic runs inside it. Or, instead:
//   STREAM_URL            an http(s) URL of the reconcile function that streams a command's output (the backup of a
//                         command, `backupCommand`), fetched with PROGRESS_TOKEN_FILE's token, into restic backup --stdin;
//   STDIN_FILENAME        the file that output becomes in the snapshot (with STREAM_URL).
//   PVC_NAME, PVC_NAMESPACE   the PVC backed up; the snapshot is tagged pvc=<name> and namespace=<namespace>.
//   BACKUP_SCHEDULE       the BackupSchedule, when there is one; tagged schedule=<name>.
//   SNAPSHOT_TIME         when the volume snapshot was taken (RFC 3339, or restic's `2006-01-02 15:04:05` in UTC);
//                         becomes the restic snapshot's time. Default: now.
//
//   restore:
//   RESTORE_TARGET_PATH   absolute path to restore into. Required.
//   RESTORE_SNAPSHOT      a snapshot id (8 to 64 hex digits) or `latest`. Default latest.
//   RESTORE_BEFORE        instead of the latest: the latest taken at or before this RFC 3339 time.
//   PVC_NAME, PVC_NAMESPACE   whose snapshots to choose from (with CLUSTER_NAME as host); required unless
//                         RESTORE_SNAPSHOT is an id.
//   RESTORE_INCLUDE       a JSON array of paths inside the snapshot to restore, e.g. ["/data/db"]. Default: all.
//   RESTORE_DELETE        true/false; delete files in the target that are not in the snapshot (restic's --delete;
//                         with RESTORE_INCLUDE, only within the included paths), so the target holds exactly the
//                         snapshot. A root-level lost+found is kept. Default false: files not in the snapshot stay.
//
//   prune:
//   RETENTION             the policy, as the BackupSchedule's prune.retain in JSON:
//                         {"last","hourly","daily","weekly","monthly","yearly": counts, "within": "1y6m"}. Required,
//                         with at least one rule.
//   BACKUP_SCHEDULE       when set, only that schedule's snapshots are forgotten.
//
//   check:
//   CHECK_READ_DATA_SUBSET  also read this part of the data: `1/10`, `5%` or `500M` (restic's --read-data-subset).
//
//   snapshots:
//   PVC_NAME, PVC_NAMESPACE   whose snapshots to list (of every cluster, unless CLUSTER_NAME says which). Required.
//
//   prune, check and unlock, which first remove the locks of workers that are gone (lib/restic/locks.ts):
//   STALE_LOCKS_BEFORE    an RFC 3339 time at which no worker Job of this cluster was active: the locks of this
//                         cluster's workers taken before it are stale. The tick sets it on a prune it starts at
//                         such a moment. Without it, only an earlier attempt's locks of this worker's own Job go.
import path from "node:path";
import { z } from "zod";
import { redactUrl } from "../../lib/restic/redact.ts";
import { isEmptyPolicy, Retention } from "../../lib/restic/retention.ts";
import { isRepositoryVariable } from "../../lib/restic/secret-env.ts";
import type { WorkerCommand } from "../../lib/restic/result.ts";
import { parseGoDuration, parseSnapshotTime } from "../../lib/restic/time.ts";

type Env = Readonly<Record<string, string | undefined>>;

export const defaultTerminationMessagePath = "/dev/termination-log";

/** Read on its own, so that even an invalid configuration can be reported where Kubernetes looks for it. */
export function terminationMessagePath(env: Env): string {
  return env.TERMINATION_MESSAGE_PATH || defaultTerminationMessagePath;
}

const missing = (iss: { input: unknown }) => (iss.input === undefined ? "is required" : undefined);

const text = () => z.string({ error: missing }).min(1, "must not be empty");

const absolutePath = () => text().refine((p) => path.posix.isAbsolute(p), "must be an absolute path");

// A DNS-1123 name, as Kubernetes names are; it also keeps commas (restic's tag separator) out of tags.
const kubeName = () =>
  text()
    .max(253)
    .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "must be a Kubernetes name (lower case letters, digits, '-' and '.')");

const goDuration = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .refine((d) => parseGoDuration(d) !== undefined, "must be a duration such as 90s, 5m or 1h30m");

const time = () => z.string().transform((t, ctx) => parseSnapshotTime(t) ?? invalid(ctx, "must be an RFC 3339 time such as 2024-05-01T02:00:00Z"));

const json = <T extends z.ZodType>(schema: T) =>
  z
    .string({ error: missing })
    .transform((t, ctx): unknown => {
      try {
        return JSON.parse(t);
      } catch {
        return invalid(ctx, "must be JSON");
      }
    })
    .pipe(schema);

function invalid(ctx: z.RefinementCtx, message: string): never {
  ctx.addIssue({ code: "custom", message });
  return z.NEVER;
}

const Common = z.object({
  RESTIC_REPOSITORY: z.string().optional(),
  RESTIC_REPOSITORY_FILE: z.string().optional(),
  RESTIC_PASSWORD: z.string().optional(),
  RESTIC_PASSWORD_FILE: z.string().optional(),
  RESTIC_PASSWORD_COMMAND: z.string().optional(),
  RESTIC_BINARY: z.string().default("restic"),
  CLUSTER_NAME: text().optional(),
  INITIALIZE_REPO: z.stringbool({ error: "must be true or false" }).default(false),
  LOCK_WAIT: goDuration("5m"),
  UNREACHABLE_TIMEOUT: goDuration("2m"),
  REPOSITORY_WAIT: goDuration("0s"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).default("info"),
  PROGRESS_SINK_URL: z.url({ protocol: /^https?$/, error: "must be an http or https URL" }).optional(),
  PROGRESS_INTERVAL: goDuration("10s"),
  PROGRESS_SUBJECT: z.string().optional(),
  PROGRESS_TOKEN_FILE: z.string().min(1).optional(),
  REPOSITORY_SHOWN_AS: text().optional(),
});

const Owner = { PVC_NAME: kubeName(), PVC_NAMESPACE: kubeName() };

const StaleLocks = { STALE_LOCKS_BEFORE: time().optional() };

const schemas = {
  backup: Common.extend({
    CLUSTER_NAME: text(),
    SOURCE_PATH: absolutePath().optional(),
    STREAM_URL: z.url({ protocol: /^https?$/, error: "must be an http or https URL" }).optional(),
    STDIN_FILENAME: text()
      .max(255)
      .regex(/^[^/]+$/, "must be a file name, without '/'")
      .optional(),
    ...Owner,
    BACKUP_SCHEDULE: kubeName().optional(),
    SNAPSHOT_TIME: time().optional(),
  }),
  restore: Common.extend({
    RESTORE_TARGET_PATH: absolutePath(),
    RESTORE_SNAPSHOT: z
      .string()
      .regex(/^([0-9a-f]{8,64}|latest)$/, "must be a snapshot id (8 to 64 hex digits) or latest")
      .default("latest"),
    RESTORE_BEFORE: time().optional(),
    RESTORE_INCLUDE: json(z.array(text(), { error: "must be a JSON array of paths" })).optional(),
    RESTORE_DELETE: z.stringbool({ error: "must be true or false" }).default(false),
    PVC_NAME: kubeName().optional(),
    PVC_NAMESPACE: kubeName().optional(),
  }),
  prune: Common.extend({
    CLUSTER_NAME: text(),
    RETENTION: json(Retention).refine((r) => !isEmptyPolicy(r), "must keep something: give at least one rule"),
    BACKUP_SCHEDULE: kubeName().optional(),
    ...StaleLocks,
  }),
  check: Common.extend({
    CHECK_READ_DATA_SUBSET: z
      .string()
      .regex(/^(\d+\/\d+|\d+(\.\d+)?%|\d+[KMGT]?)$/, "must be n/t, a percentage or a size, such as 1/10, 5% or 500M")
      .optional(),
    ...StaleLocks,
  }),
  unlock: Common.extend(StaleLocks),
  snapshots: Common.extend({ ...Owner }),
} as const satisfies Record<WorkerCommand, z.ZodObject>;

/**
 * The worker settings a worker Job may give by name in its env (docs/security.md): everything the worker reads but
 * restic's repository variables (only from the repository Secret), the restic executable and where the result is
 * written (both the image's alone). The admission policy walle-reconcile-bounds admits these names only.
 */
export function workerSettingNames(): string[] {
  // RESTIC_CACHE_DIR: restic's cache, which Walle puts on the worker's emptyDir.
  const names = new Set(["RESTIC_CACHE_DIR", ...Object.values(schemas).flatMap((s) => Object.keys(s.shape))]);
  for (const own of ["RESTIC_BINARY", "TERMINATION_MESSAGE_PATH"]) names.delete(own);
  return [...names].filter((n) => !isRepositoryVariable(n)).sort();
}

type Raw<C extends WorkerCommand> = z.infer<(typeof schemas)[C]>;

/** What every command needs. */
export interface CommonConfig {
  resticBinary: string;
  /** For messages and logs only, with any password masked; restic reads the real one from its environment. */
  repository?: string;
  host?: string;
  initializeRepo: boolean;
  /** How long to wait for another worker to create a repository that does not exist yet; 0: do not wait. */
  repositoryWaitMs: number;
  lockWait: string;
  unreachableTimeout: string;
  unreachableTimeoutMs: number;
  logLevel: Raw<"unlock">["LOG_LEVEL"];
  progress: { sinkUrl?: string; intervalMs: number; subject?: string; tokenFile?: string };
}

export interface BackupConfig extends CommonConfig {
  command: "backup";
  host: string;
  /** The mounted snapshot of a backup of a volume; absent for the backup of a command's output (`stream`). */
  sourcePath?: string;
  /** The backup of a command's output: the reconcile function's stream of it, and the file it becomes. */
  stream?: { url: string; fileName: string };
  owner: { pvc: string; namespace: string; schedule?: string };
  snapshotTime?: Date;
}

export type RestoreSource = { kind: "id"; id: string } | { kind: "latest"; host: string; pvc: string; namespace: string; before?: Date };

export interface RestoreConfig extends CommonConfig {
  command: "restore";
  targetPath: string;
  source: RestoreSource;
  include: string[];
  /** Files in the target that are not in the snapshot are deleted. */
  deleteOthers: boolean;
}

/** What the commands that remove gone workers' locks first know about them. */
export interface StaleLockConfig {
  staleLocksBefore?: Date;
}

export interface PruneConfig extends CommonConfig, StaleLockConfig {
  command: "prune";
  host: string;
  retention: Retention;
  schedule?: string;
}

export interface CheckConfig extends CommonConfig, StaleLockConfig {
  command: "check";
  readDataSubset?: string;
}

export interface UnlockConfig extends CommonConfig, StaleLockConfig {
  command: "unlock";
}

export interface SnapshotsConfig extends CommonConfig {
  command: "snapshots";
  owner: { pvc: string; namespace: string };
}

export type WorkerConfig = BackupConfig | RestoreConfig | PruneConfig | CheckConfig | UnlockConfig | SnapshotsConfig;

export class ConfigError extends Error {
  override name = "ConfigError";
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`Invalid worker configuration: ${problems.join("; ")}.`);
    this.problems = problems;
  }
}

/** Parses the environment for one command, or throws a ConfigError naming every bad variable. */
export function parseConfig(command: WorkerCommand, env: Env): WorkerConfig {
  switch (command) {
    case "backup":
      return backupConfig(parse(schemas.backup, env, backupSourceProblems));
    case "restore":
      return restoreConfig(parse(schemas.restore, env));
    case "prune": {
      const raw = parse(schemas.prune, env);
      return {
        ...common(raw),
        command,
        host: raw.CLUSTER_NAME,
        retention: raw.RETENTION,
        schedule: raw.BACKUP_SCHEDULE,
        staleLocksBefore: raw.STALE_LOCKS_BEFORE,
      };
    }
    case "check": {
      const raw = parse(schemas.check, env);
      return { ...common(raw), command, readDataSubset: raw.CHECK_READ_DATA_SUBSET, staleLocksBefore: raw.STALE_LOCKS_BEFORE };
    }
    case "unlock": {
      const raw = parse(schemas.unlock, env);
      return { ...common(raw), command, staleLocksBefore: raw.STALE_LOCKS_BEFORE };
    }
    case "snapshots": {
      const raw = parse(schemas.snapshots, env);
      return { ...common(raw), command, owner: { pvc: raw.PVC_NAME, namespace: raw.PVC_NAMESPACE } };
    }
    default:
      return unhandled(command);
  }
}

function parse<S extends z.ZodType>(schema: S, env: Env, more: (present: Record<string, string>) => string[] = () => []): z.infer<S> {
  const present = withoutEmpty(env);
  const problems = secretProblems(present);
  const parsed = schema.safeParse(present);
  if (!parsed.success) problems.push(...parsed.error.issues.map((i) => `${i.path.join(".")} ${i.message}`));
  problems.push(...more(present));
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems);
  return parsed.data;
}

// Kubernetes sets an env var from an absent optional key to "", which must mean "not set", not "invalid".
function withoutEmpty(env: Env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== "") out[k] = v;
  return out;
}

function secretProblems(env: Env): string[] {
  const problems: string[] = [];
  if (!env.RESTIC_REPOSITORY && !env.RESTIC_REPOSITORY_FILE) problems.push("RESTIC_REPOSITORY is required (or RESTIC_REPOSITORY_FILE)");
  if (!env.RESTIC_PASSWORD && !env.RESTIC_PASSWORD_FILE && !env.RESTIC_PASSWORD_COMMAND) {
    problems.push("RESTIC_PASSWORD is required (or RESTIC_PASSWORD_FILE or RESTIC_PASSWORD_COMMAND)");
  }
  return problems;
}

function common(raw: Raw<"unlock">): CommonConfig {
  return {
    resticBinary: raw.RESTIC_BINARY,
    // A tenant's run in a shared repository names it by its Secret, never by where it is.
    repository: raw.REPOSITORY_SHOWN_AS ?? (raw.RESTIC_REPOSITORY ? redactUrl(raw.RESTIC_REPOSITORY) : undefined),
    host: raw.CLUSTER_NAME,
    initializeRepo: raw.INITIALIZE_REPO,
    repositoryWaitMs: parseGoDuration(raw.REPOSITORY_WAIT) ?? 0,
    lockWait: raw.LOCK_WAIT,
    unreachableTimeout: raw.UNREACHABLE_TIMEOUT,
    unreachableTimeoutMs: parseGoDuration(raw.UNREACHABLE_TIMEOUT) ?? 0,
    logLevel: raw.LOG_LEVEL,
    progress: {
      sinkUrl: raw.PROGRESS_SINK_URL,
      intervalMs: parseGoDuration(raw.PROGRESS_INTERVAL) ?? 0,
      subject: raw.PROGRESS_SUBJECT,
      tokenFile: raw.PROGRESS_TOKEN_FILE,
    },
  };
}

/** A backup reads one source: the mounted snapshot, or the stream of a command's output with what it needs. */
function backupSourceProblems(present: Record<string, string>): string[] {
  const { SOURCE_PATH: source, STREAM_URL: stream } = present;
  if (source === undefined && stream === undefined) return ["SOURCE_PATH is required (or STREAM_URL)"];
  if (source !== undefined && stream !== undefined) return ["SOURCE_PATH and STREAM_URL are two sources: give one"];
  if (stream === undefined) return [];
  return ["STDIN_FILENAME", "PROGRESS_TOKEN_FILE"].filter((k) => present[k] === undefined).map((k) => `${k} is required with STREAM_URL`);
}

function backupConfig(raw: Raw<"backup">): BackupConfig {
  return {
    ...common(raw),
    command: "backup",
    host: raw.CLUSTER_NAME,
    ...(raw.SOURCE_PATH !== undefined ? { sourcePath: path.posix.normalize(raw.SOURCE_PATH) } : {}),
    ...(raw.STREAM_URL !== undefined ? { stream: { url: raw.STREAM_URL, fileName: raw.STDIN_FILENAME ?? "" } } : {}),
    owner: { pvc: raw.PVC_NAME, namespace: raw.PVC_NAMESPACE, schedule: raw.BACKUP_SCHEDULE },
    snapshotTime: raw.SNAPSHOT_TIME,
  };
}

// Which snapshot: an id needs nothing else; "latest" (optionally before a time) needs the PVC and the host.
function restoreConfig(raw: Raw<"restore">): RestoreConfig {
  const base = {
    ...common(raw),
    command: "restore" as const,
    targetPath: raw.RESTORE_TARGET_PATH,
    include: raw.RESTORE_INCLUDE ?? [],
    deleteOthers: raw.RESTORE_DELETE,
  };
  if (raw.RESTORE_SNAPSHOT !== "latest") {
    if (raw.RESTORE_BEFORE) throw new ConfigError(["RESTORE_BEFORE cannot be combined with a RESTORE_SNAPSHOT id"]);
    return { ...base, source: { kind: "id", id: raw.RESTORE_SNAPSHOT } };
  }
  const { CLUSTER_NAME: host, PVC_NAME: pvc, PVC_NAMESPACE: namespace } = raw;
  if (!host || !pvc || !namespace) {
    const absent = Object.entries({ CLUSTER_NAME: host, PVC_NAME: pvc, PVC_NAMESPACE: namespace }).filter(([, v]) => !v);
    throw new ConfigError(absent.map(([name]) => `${name} is required to find the latest snapshot (or set RESTORE_SNAPSHOT to an id)`));
  }
  return { ...base, source: { kind: "latest", host, pvc, namespace, ...(raw.RESTORE_BEFORE ? { before: raw.RESTORE_BEFORE } : {}) } };
}

function unhandled(value: never): never {
  throw new Error(`Unhandled command ${String(value)}`);
}

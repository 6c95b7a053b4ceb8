// The command line of kubectl walle: its commands, their flags (kubectl's where kubectl has one: -n, -A, -o,
// --no-headers, --kubeconfig, --context), and the help each prints. Parsing is node:util's parseArgs, strict: an
// unknown flag or a missing argument is a usage error that names it.
import { parseArgs, type ParseArgsConfig } from "node:util";
import type { OutputFormat } from "./render.ts";

export class UsageError extends Error {
  override name = "UsageError";
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}

export interface Globals {
  readonly namespace?: string;
  readonly allNamespaces: boolean;
  readonly kubeconfig?: string;
  readonly context?: string;
  readonly output: OutputFormat;
  readonly noHeaders: boolean;
}

export type Command =
  | { readonly name: "help"; readonly topic?: string }
  | {
      readonly name: "backup";
      readonly globals: Globals;
      readonly pvc: string;
      readonly repository: string;
      readonly wait: boolean;
      readonly timeoutSeconds: number;
    }
  | { readonly name: "backup-schedule"; readonly globals: Globals; readonly schedule: string; readonly wait: boolean; readonly timeoutSeconds: number }
  | {
      readonly name: "restore";
      readonly globals: Globals;
      readonly pvc: string;
      readonly to?: string;
      readonly inPlace: boolean;
      readonly force: boolean;
      readonly snapshot?: string;
      readonly before?: string;
      readonly paths: readonly string[];
      readonly repository: string;
      readonly wait: boolean;
      readonly timeoutSeconds: number;
    }
  | { readonly name: "status"; readonly globals: Globals }
  | {
      readonly name: "snapshots";
      readonly globals: Globals;
      readonly pvc: string;
      readonly repository: string;
      readonly workerImage?: string;
      readonly timeoutSeconds: number;
    };

const globalFlags = {
  namespace: { type: "string", short: "n" },
  "all-namespaces": { type: "boolean", short: "A" },
  kubeconfig: { type: "string" },
  context: { type: "string" },
  output: { type: "string", short: "o" },
  "no-headers": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

// A BackupJob or BackupRestore its user makes may use only its own namespace's repository (the tenant guard), so
// the Secret is named alone; a shared repository is reached through the CloudEvent trigger instead (README).
const repositoryFlags = { repository: { type: "string" } } as const;
const waitFlags = { wait: { type: "boolean" }, timeout: { type: "string" } } as const;

const commandFlags = {
  backup: { ...repositoryFlags, ...waitFlags, schedule: { type: "string" } },
  restore: {
    ...repositoryFlags,
    ...waitFlags,
    to: { type: "string" },
    "in-place": { type: "boolean" },
    force: { type: "boolean" },
    snapshot: { type: "string" },
    before: { type: "string" },
    path: { type: "string", multiple: true },
  },
  status: {},
  snapshots: { ...repositoryFlags, timeout: { type: "string" }, "worker-image": { type: "string" } },
} as const satisfies Record<string, ParseArgsConfig["options"]>;

type CommandName = keyof typeof commandFlags;
const isCommand = (s: string | undefined): s is CommandName => s !== undefined && Object.hasOwn(commandFlags, s);

export const USAGE = `kubectl walle: back up and restore PersistentVolumeClaims with Walle, as yourself.

Commands:
  backup <pvc>     Back up a PVC now (a BackupJob); --wait follows it to its end.
  backup --schedule <s>
                   Run a BackupSchedule now (a BackupSet of BackupJobs, one per PVC its plans select).
  restore <pvc>    Restore a PVC's snapshot into a new PVC or in place (a BackupRestore).
  snapshots <pvc>  A PVC's snapshots in its repository, newest first (read by a short worker Job).
  status           Schedules with their last and next runs, running BackupSets, failing BackupJobs.

Flags for every command:
  -n, --namespace <ns>     The namespace (default: the kubeconfig context's, else default).
  -A, --all-namespaces     (status) Every namespace.
  -o, --output <format>    table (default), json or yaml.
      --no-headers         Tables without their header line.
      --kubeconfig <file>  The kubeconfig (default: KUBECONFIG, else ~/.kube/config).
      --context <name>     A context of the kubeconfig other than its current one.
  -h, --help               Help for a command.

Run 'kubectl walle <command> --help' for a command's flags and examples.`;

export const HELP: Record<CommandName, string> = {
  backup: `Back up a PVC now: creates a BackupJob in its namespace, which Walle's reconcile function drives through a
CSI snapshot and a restic backup. You need RBAC to create backupjobs.ros.io there.

With --schedule, run a BackupSchedule now instead, whatever its clock says (suspended too; its grid stays): the
plugin sets the schedule's ros.io/backup-requested annotation, Walle starts one BackupSet of the PVCs its plans
select, into its repository, and the plugin prints what started. You need RBAC to get and patch that
backupschedules.ros.io (examples/kubectl-walle-rbac.yaml, walle-cli-schedules).

Usage:
  kubectl walle backup <pvc> [-n ns] --repository <secret> [--wait [--timeout 30m]]
  kubectl walle backup --schedule <schedule> [--wait] [--timeout 2h]

Flags:
      --repository <secret>     The repository's Secret, in the PVC's namespace (required with a PVC).
      --schedule <schedule>     Run this BackupSchedule now instead of backing up one PVC.
      --wait                    Follow the backup (or the schedule's BackupSet) to its end, with a progress bar for a
                                PVC; the exit code says how it ended.
      --timeout <duration>      How long --wait waits, e.g. 90s, 30m, 2h (default 6h). With --schedule, also how
                                long to wait for Walle to start the run (default 2m without --wait).

Exit codes: 0 Finished (or created, without --wait), 1 Failed, FinishedWithFailures, nothing to back up, or
refused, 2 bad usage, 3 still running (or, with --schedule, not yet started) at --timeout.

Examples:
  kubectl walle backup data -n shop --repository restic-repo --wait
  kubectl walle backup db-0 -n shop --repository shop-repo --timeout 1h --wait
  kubectl walle backup --schedule nightly --wait`,
  restore: `Restore a PVC's snapshot: creates a BackupRestore, into a new PVC (--to) or into the PVC itself (--in-place).
The newest snapshot is restored unless --snapshot or --before says otherwise. You need RBAC to create
backuprestores.ros.io in the namespace.

Usage:
  kubectl walle restore <pvc> (--to <new-pvc> | --in-place [--force]) [--snapshot <id> | --before <time>]
                        [--path <p>]... [-n ns] --repository <secret> [--wait]

Flags:
      --to <new-pvc>            Create this PVC (the size and StorageClass of <pvc>) and restore into it.
      --in-place                Restore into <pvc> itself; refused while pods mount it.
      --force                   With --in-place: restore even while pods mount it.
      --snapshot <id>           This restic snapshot (8 to 64 hex digits).
      --before <time>           The newest snapshot taken before this RFC 3339 time.
      --path <p>                Only this path of the snapshot (repeatable), e.g. --path /db.
      --repository <secret>     The repository's Secret, in the namespace (required).
      --wait, --timeout         As for backup.

Examples:
  kubectl walle restore data -n shop --to data-restored --repository restic-repo --wait
  kubectl walle restore data -n shop --in-place --before 2026-12-01T00:00:00Z --repository restic-repo`,
  snapshots: `A PVC's snapshots in the repository, newest first, with their id, time, host and size. A short worker Job in
the namespace reads the repository with its Secret, and only the list comes back: the password never reaches you.
You need RBAC to create jobs and serviceaccounts there (examples/kubectl-walle-rbac.yaml).

Usage:
  kubectl walle snapshots <pvc> [-n ns] --repository <secret> [--worker-image <image>] [--timeout 5m]

Flags:
      --repository <secret>     The repository's Secret, in the namespace (required).
      --worker-image <image>    The worker image (default ghcr.io/ros-io/walle-worker:<this version>).
      --timeout <duration>      How long to wait for the worker (default 5m).

Examples:
  kubectl walle snapshots data -n shop --repository restic-repo
  kubectl walle snapshots data -n shop --repository restic-repo -o json`,
  status: `Schedules with their state, last and next runs; the BackupSets still running with their completions; and the
BackupJobs that failed, with their messages. What your RBAC hides is named, not left out silently.

Usage:
  kubectl walle status [-n ns | -A] [-o table|json|yaml] [--no-headers]

Examples:
  kubectl walle status -A
  kubectl walle status -n shop -o yaml`,
};

/** A Go-style duration (90s, 30m, 1h30m) in seconds; undefined when it is not one. */
export function durationSeconds(text: string): number | undefined {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!m || text === "") return undefined;
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

function timeoutOf(text: string, command: string): number {
  const seconds = durationSeconds(text);
  if (!seconds) throw new UsageError(`--timeout must be a duration such as 90s, 30m or 2h, not "${text}"`, command);
  return seconds;
}

export function parseCommandLine(argv: readonly string[]): Command {
  const [first, ...rest] = argv;
  if (first === undefined || first === "help" || first === "-h" || first === "--help") return { name: "help", ...(rest[0] ? { topic: rest[0] } : {}) };
  if (!isCommand(first)) throw new UsageError(`unknown command "${first}": the commands are backup, restore, snapshots and status`);
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: { ...globalFlags, ...commandFlags[first] }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ""), first);
  }
  const v = parsed.values as Record<string, string | boolean | string[] | undefined>;
  if (v.help) return { name: "help", topic: first };
  const str = (k: string) => (typeof v[k] === "string" ? (v[k] as string) : undefined);
  const flag = (k: string) => v[k] === true;
  const output = str("output") ?? "table";
  if (output !== "table" && output !== "json" && output !== "yaml") throw new UsageError(`--output must be table, json or yaml, not "${output}"`, first);
  const namespace = str("namespace");
  const globals: Globals = {
    ...(namespace ? { namespace } : {}),
    allNamespaces: flag("all-namespaces"),
    ...(str("kubeconfig") ? { kubeconfig: str("kubeconfig") } : {}),
    ...(str("context") ? { context: str("context") } : {}),
    output,
    noHeaders: flag("no-headers"),
  };
  if (first !== "status" && globals.allNamespaces) throw new UsageError(`--all-namespaces applies to status only`, first);
  const positionals = parsed.positionals;
  const schedule = str("schedule");
  if (schedule !== undefined) {
    if (positionals.length > 0) throw new UsageError(`backup --schedule runs the PVCs its plans select; give no PVC ("${positionals.join(" ")}")`, first);
    if (str("repository") !== undefined) throw new UsageError("backup --schedule uses the schedule's own repository; drop --repository", first);
    if (namespace !== undefined) throw new UsageError("BackupSchedules are cluster-scoped: -n does not apply to backup --schedule", first);
    if (schedule === "") throw new UsageError("--schedule needs the BackupSchedule's name", first);
    const text = str("timeout") ?? (flag("wait") ? "6h" : "2m");
    return { name: "backup-schedule", globals, schedule, wait: flag("wait"), timeoutSeconds: timeoutOf(text, first) };
  }
  if (first === "status") {
    if (positionals.length > 0) throw new UsageError(`status takes no arguments, not "${positionals.join(" ")}"`, first);
    return { name: "status", globals };
  }
  const [pvc, ...extra] = positionals;
  if (!pvc) throw new UsageError(`${first} needs the PVC: kubectl walle ${first} <pvc>`, first);
  if (extra.length > 0) throw new UsageError(`${first} takes one PVC, not also "${extra.join(" ")}"`, first);
  if (first !== "snapshots" && str("timeout") !== undefined && !flag("wait"))
    throw new UsageError("--timeout says how long --wait waits: give --wait too", first);
  const timeoutSeconds = timeoutOf(str("timeout") ?? (first === "snapshots" ? "5m" : "6h"), first);
  const repository = str("repository");
  if (!repository) throw new UsageError(`${first} needs --repository <secret>: the repository Secret in the PVC's namespace`, first);
  if (first === "backup") return { name: "backup", globals, pvc, repository, wait: flag("wait"), timeoutSeconds };
  if (first === "snapshots")
    return { name: "snapshots", globals, pvc, repository, ...(str("worker-image") ? { workerImage: str("worker-image") } : {}), timeoutSeconds };
  const to = str("to");
  const inPlace = flag("in-place");
  if ((to === undefined) === !inPlace) throw new UsageError("restore needs exactly one of --to <new-pvc> and --in-place", first);
  if (flag("force") && !inPlace) throw new UsageError("--force applies to --in-place only: a new PVC is mounted by no one", first);
  if (str("snapshot") && str("before")) throw new UsageError("give --snapshot or --before, not both", first);
  return {
    name: "restore",
    globals,
    pvc,
    ...(to ? { to } : {}),
    inPlace,
    force: flag("force"),
    ...(str("snapshot") ? { snapshot: str("snapshot") } : {}),
    ...(str("before") ? { before: str("before") } : {}),
    paths: Array.isArray(v.path) ? v.path : [],
    repository,
    wait: flag("wait"),
    timeoutSeconds,
  };
}

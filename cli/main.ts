// kubectl walle: the administrator's command line, as a kubectl plugin (an executable kubectl-walle on the PATH).
// It acts as the user of the kubeconfig, never as one of Walle's service accounts: the kubeconfig is read as
// kubectl reads it (KUBECONFIG's list, --kubeconfig, --context, exec credential plugins, the context's namespace)
// through @kubernetes/client-node's KubeConfig, and every request goes through the application layer
// (lib/app/admin.ts), so the user's RBAC and Walle's admission policies decide.
//
// Exit codes: 0 done (a followed backup or restore Finished), 1 failed or refused, 2 bad usage, 3 still running
// when --timeout passed.
import os from "node:os";
import path from "node:path";
import pkg from "../package.json" with { type: "json" };
import { BackupJobConditionType } from "../lib/api/backup-job.ts";
import { BackupRestoreConditionType } from "../lib/api/backup-restore.ts";
import {
  failedJobsOf,
  follow,
  followSet,
  listSnapshots,
  readStatus,
  requestBackup,
  requestRestore,
  requestScheduleRun,
  type Created,
  type Followed,
  type StatusReport,
} from "../lib/app/admin.ts";
import { BackupSetState } from "../lib/api/backup-set.ts";
import { formatBytes } from "../lib/format.ts";
import { kubeconfigCredentials, kubeconfigFiles, loadKubeconfig } from "../lib/k8s/kubeconfig.ts";
import { objectPath } from "../lib/k8s/paths.ts";
import { RestClient } from "../lib/k8s/rest.ts";
import { HELP, parseCommandLine, USAGE, UsageError, type Command, type Globals } from "./options.ts";
import { age, paint, printObjects, progressLine, table, until } from "./render.ts";

export interface Io {
  readonly out: NodeJS.WritableStream & { isTTY?: boolean };
  readonly err: NodeJS.WritableStream & { isTTY?: boolean };
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly now: () => Date;
}

const EXIT = { ok: 0, failed: 1, usage: 2, timedOut: 3 } as const;

const resource = (c: Created) => `${c.kind.toLowerCase()}.ros.io/${c.name}`;

/** Colour only on a terminal, and never when NO_COLOR is set (no-color.org). */
const colours = (stream: { isTTY?: boolean }, env: Io["env"]) => stream.isTTY === true && !env.NO_COLOR;

async function connect(g: Globals, env: Io["env"]): Promise<{ api: RestClient; namespace: string }> {
  const listed = kubeconfigFiles(env.KUBECONFIG);
  const files = g.kubeconfig ? [g.kubeconfig] : listed.length > 0 ? listed : [path.join(env.HOME ?? os.homedir(), ".kube", "config")];
  const kc = await loadKubeconfig(files, { ...(g.context ? { context: g.context } : {}), skipMissing: !g.kubeconfig });
  const namespace = g.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default";
  return { api: new RestClient(await kubeconfigCredentials(kc)), namespace };
}

/** Follows a created BackupJob or BackupRestore to its end: a redrawn bar on a terminal, each new phase elsewhere. */
async function await_(api: RestClient, c: Created, timeoutSeconds: number, io: Io): Promise<{ code: number; last?: Followed }> {
  const tty = io.err.isTTY === true;
  const colour = colours(io.err, io.env);
  let phase = "";
  let drawn = false;
  const { last, ended } = await follow(
    api,
    c,
    (o) => {
      const now = o.status?.phase ?? "Pending";
      if (tty) {
        const line = o.status?.progress && !["Finished", "Failed"].includes(now) ? `${now}  ${progressLine(o.status.progress, { color: colour })}` : now;
        io.err.write(`\r\x1b[2K${line}`);
        drawn = true;
      } else if (now !== phase) {
        io.err.write(`${resource(c)} ${now}\n`);
      }
      phase = now;
    },
    timeoutSeconds * 1000,
  );
  if (drawn) io.err.write("\n");
  if (!ended) {
    io.err.write(
      `${paint("error:", "red", colour)} ${resource(c)} is still ${phase || "Pending"} after ${timeoutSeconds} s; follow it with kubectl -n ${c.namespace} get ${c.kind.toLowerCase()} ${c.name} -w\n`,
    );
    return { code: EXIT.timedOut, ...(last ? { last } : {}) };
  }
  if (last?.status?.phase === "Finished") return { code: EXIT.ok, last };
  const state = c.kind === "BackupJob" ? BackupJobConditionType.BackupState : BackupRestoreConditionType.RestoreState;
  const why = last?.status?.conditions?.find((k) => k.type === state) ?? last?.status?.conditions?.find((k) => k.status === "False");
  io.err.write(`${paint("error:", "red", colour)} ${resource(c)} Failed${why?.reason ? ` (${why.reason})` : ""}: ${why?.message ?? "see kubectl describe"}\n`);
  return { code: EXIT.failed, ...(last ? { last } : {}) };
}

/** A created object's outcome: kubectl's `<resource> created`, then, with --wait, how it ended. */
async function created(api: RestClient, c: Created, wait: boolean, timeoutSeconds: number, g: Globals, io: Io): Promise<number> {
  if (g.output === "table") io.out.write(`${resource(c)} created\n`);
  if (!wait) {
    if (g.output !== "table") io.out.write(`${printObjects([await api.get(objectPath(c.kind, c.name, c.namespace))], g.output)}\n`);
    return EXIT.ok;
  }
  const { code, last } = await await_(api, c, timeoutSeconds, io);
  if (g.output !== "table" && last) io.out.write(`${printObjects([last], g.output)}\n`);
  else if (code === EXIT.ok) io.out.write(`${resource(c)} Finished${last?.status?.snapshotId ? `: snapshot ${last.status.snapshotId.slice(0, 8)}` : ""}\n`);
  return code;
}

/**
 * Runs a schedule now and says what started; with --wait, follows its BackupSet to the end (each new completion
 * count once, or redrawn on a terminal) and names the BackupJobs that failed.
 */
async function runSchedule(api: RestClient, cmd: Extract<Command, { name: "backup-schedule" }>, io: Io): Promise<number> {
  const colour = colours(io.err, io.env);
  const error = (m: string) => io.err.write(`${paint("error:", "red", colour)} ${m}\n`);
  const deadline = Date.now() + cmd.timeoutSeconds * 1000;
  const requestId = io.now().toISOString();
  const answer = await requestScheduleRun(api, cmd.schedule, requestId, cmd.timeoutSeconds * 1000);
  const schedule = `backupschedule.ros.io/${cmd.schedule}`;
  if (!answer) {
    error(
      `${schedule}: Walle did not take up the run (ros.io/backup-requested=${requestId}) within ${cmd.timeoutSeconds} s. Is its reconcile function installed? The request stands: the next tick starts it.`,
    );
    return EXIT.timedOut;
  }
  if (!answer.backupSet) {
    error(`${schedule} started no backup: ${answer.message}`);
    return EXIT.failed;
  }
  const set = `backupset.ros.io/${answer.backupSet}`;
  const table = cmd.globals.output === "table";
  if (table) io.out.write(`${set} created: ${answer.message}\n`);
  if (!cmd.wait) {
    if (!table) io.out.write(`${printObjects([await api.get(objectPath("BackupSet", answer.backupSet))], cmd.globals.output)}\n`);
    return EXIT.ok;
  }
  const tty = io.err.isTTY === true;
  let shown = "";
  const { last, ended } = await followSet(
    api,
    answer.backupSet,
    (o) => {
      const line = `${set} ${o.status?.state ?? "Running"} ${o.status?.completions ?? ""}`.trimEnd();
      if (line === shown) return;
      io.err.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
      shown = line;
    },
    Math.max(0, deadline - Date.now()),
  );
  if (tty && shown) io.err.write("\n");
  const state = `${last?.status?.state ?? "Running"} ${last?.status?.completions ?? ""}`.trimEnd();
  if (!table && last) io.out.write(`${printObjects([last], cmd.globals.output)}\n`);
  if (!ended) {
    error(`${set} is still ${state} after ${cmd.timeoutSeconds} s; follow it with kubectl get backupset ${answer.backupSet} -w`);
    return EXIT.timedOut;
  }
  if (last?.status?.state === BackupSetState.Finished) {
    if (table) io.out.write(`${set} ${state}\n`);
    return EXIT.ok;
  }
  error(`${set} ${state}`);
  const failed = await failedJobsOf(api, answer.backupSet);
  if (failed === undefined)
    io.err.write(`  Your RBAC does not list BackupJobs in every namespace; kubectl walle status -A, as someone it lets, names the failures.\n`);
  for (const j of failed ?? []) io.err.write(`  backupjob.ros.io/${j.name} -n ${j.namespace} (${j.reason}): ${j.message}\n`);
  return EXIT.failed;
}

function printStatus(s: StatusReport, g: Globals, io: Io): void {
  const now = io.now();
  if (g.output !== "table") {
    io.out.write(`${printObjects(s.objects, g.output)}\n`);
    return;
  }
  const sections: string[] = [];
  if (s.schedules.length > 0) {
    sections.push(
      table(
        [
          { header: "NAME", value: (r) => `backupschedule.ros.io/${r.name}` },
          { header: "STATE", value: (r) => r.state },
          { header: "EVERY", value: (r) => r.every },
          { header: "LAST BACKUP", value: (r) => (r.lastBackupRun ? `${age(r.lastBackupRun, now)} ago` : "never") },
          { header: "NEXT BACKUP", value: (r) => until(r.nextBackupRun, now) },
          { header: "PROBLEM", value: (r) => r.problem ?? "" },
        ],
        s.schedules,
        g,
      ),
    );
  }
  if (s.runningSets.length > 0) {
    sections.push(
      table(
        [
          { header: "NAME", value: (r) => `backupset.ros.io/${r.name}` },
          { header: "SCHEDULE", value: (r) => r.schedule },
          { header: "COMPLETIONS", value: (r) => r.completions },
          { header: "AGE", value: (r) => age(r.created, now) },
        ],
        s.runningSets,
        g,
      ),
    );
  }
  if (s.failedJobs.length > 0) {
    sections.push(
      table(
        [
          ...(g.allNamespaces ? [{ header: "NAMESPACE", value: (r: (typeof s.failedJobs)[number]) => r.namespace }] : []),
          { header: "NAME", value: (r) => `backupjob.ros.io/${r.name}` },
          { header: "PVC", value: (r) => r.pvc },
          { header: "REASON", value: (r) => r.reason },
          { header: "FAILED", value: (r) => (r.finished ? `${age(r.finished, now)} ago` : "") },
          { header: "MESSAGE", value: (r) => r.message },
        ],
        s.failedJobs,
        g,
      ),
    );
  }
  if (sections.length > 0) io.out.write(`${sections.join("\n\n")}\n`);
  else if (s.hidden.length === 0) io.err.write("No BackupSchedules, running BackupSets or failed BackupJobs found.\n");
  for (const h of s.hidden) io.err.write(`Warning: cannot list ${h}\n`);
}

async function run(cmd: Exclude<Command, { name: "help" }>, io: Io): Promise<number> {
  const { api, namespace } = await connect(cmd.globals, io.env);
  switch (cmd.name) {
    case "backup": {
      const c = await requestBackup(api, { namespace, pvc: cmd.pvc, repository: cmd.repository });
      return created(api, c, cmd.wait, cmd.timeoutSeconds, cmd.globals, io);
    }
    case "backup-schedule":
      return runSchedule(api, cmd, io);
    case "restore": {
      const c = await requestRestore(api, {
        namespace,
        pvc: cmd.pvc,
        repository: cmd.repository,
        ...(cmd.to ? { to: cmd.to } : {}),
        force: cmd.force,
        ...(cmd.snapshot ? { snapshot: cmd.snapshot } : {}),
        ...(cmd.before ? { before: cmd.before } : {}),
        paths: cmd.paths,
      });
      return created(api, c, cmd.wait, cmd.timeoutSeconds, cmd.globals, io);
    }
    case "snapshots": {
      const listed = await listSnapshots(api, {
        namespace,
        pvc: cmd.pvc,
        repository: cmd.repository,
        workerImage: cmd.workerImage ?? `ghcr.io/ros-io/walle-worker:${pkg.version}`,
        timeoutMs: cmd.timeoutSeconds * 1000,
      });
      if (cmd.globals.output !== "table") {
        io.out.write(`${printObjects([{ pvc: cmd.pvc, namespace, total: listed.total, snapshots: listed.snapshots }], cmd.globals.output)}\n`);
        return EXIT.ok;
      }
      const now = io.now();
      if (listed.snapshots.length > 0) {
        io.out.write(
          `${table(
            [
              { header: "ID", value: (s) => s.id },
              {
                header: "TIME",
                value: (s) =>
                  new Date(s.time)
                    .toISOString()
                    .replace("T", " ")
                    .replace(/\.\d+Z$/, "Z"),
              },
              { header: "AGE", value: (s) => age(s.time, now) },
              { header: "HOST", value: (s) => s.host },
              { header: "SIZE", value: (s) => (s.bytes === undefined ? "" : formatBytes(s.bytes)) },
            ],
            listed.snapshots,
            cmd.globals,
          )}\n`,
        );
      }
      if (listed.snapshots.length === 0 || listed.total > listed.snapshots.length) io.err.write(`${listed.message}\n`);
      return EXIT.ok;
    }
    case "status":
      printStatus(await readStatus(api, cmd.globals.allNamespaces ? undefined : namespace), cmd.globals, io);
      return EXIT.ok;
  }
}

export async function main(argv: readonly string[], io: Io): Promise<number> {
  const colour = colours(io.err, io.env);
  const error = (message: string) => io.err.write(`${paint("error:", "red", colour)} ${message}\n`);
  let cmd: Command;
  try {
    cmd = parseCommandLine(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    error(err.message);
    io.err.write(`See 'kubectl walle ${err.command ? `${err.command} ` : ""}--help'.\n`);
    return EXIT.usage;
  }
  if (cmd.name === "help") {
    const topic = cmd.topic;
    if (topic !== undefined && !Object.hasOwn(HELP, topic)) {
      error(`unknown command "${topic}": the commands are backup, restore, snapshots and status`);
      return EXIT.usage;
    }
    io.out.write(`${topic ? HELP[topic as keyof typeof HELP] : USAGE}\n`);
    return EXIT.ok;
  }
  try {
    return await run(cmd, io);
  } catch (err) {
    error(err instanceof Error ? err.message : String(err));
    return EXIT.failed;
  }
}

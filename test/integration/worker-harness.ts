// What the worker's integration tests share: a real rest-server on loopback, the worker run as the local node
// agent runs it (a process with the pod's environment), restic itself for setting up and inspecting
// repositories, and file trees to back up and compare.
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { chmod, copyFile, lstat, mkdtemp, readdir, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { inject } from "vitest";
import { freePort } from "../../cluster/processes.ts";
import { startRestServer as startRealRestServer, type RestServer } from "../../cluster/rest-server.ts";
import { decodeResult, type WorkerCommand, type WorkerResult } from "../../lib/restic/result.ts";
import { isRepositoryVariable, podEnvironment } from "../../lib/restic/secret-env.ts";

const exec = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const workerMain = path.join(repoRoot, "functions/worker/main.ts");

export type Env = Record<string, string>;

/** A fresh temporary directory, readable by every user (some tests run the worker as uid 65532). */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), `walle-${prefix}-`));
  await chmod(dir, 0o755);
  return dir;
}

/**
 * restic, copied where any user may run it: the toolchain's cache lives under root's home, which uid 65532 cannot
 * enter.
 */
export async function publicRestic(dir: string): Promise<string> {
  const target = path.join(dir, "restic");
  await copyFile(inject("restic"), target);
  await chmod(target, 0o755);
  return target;
}

export type { RestServer };

/**
 * rest-server with htpasswd authentication and private repositories, on a free port of loopback, or, on the local
 * cluster, of the host end of its node's link, where the workers' pods reach it.
 */
export function startRestServer(o: {
  dataDir: string;
  users: Record<string, string>;
  appendOnly?: boolean;
  host?: string;
  port?: number;
}): Promise<RestServer> {
  const host = o.host ?? inject("nodeHostIp");
  return startRealRestServer({ binary: inject("restServer"), ...o, ...(host ? { host } : {}) });
}

export interface WorkerRun {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** The termination message as written. */
  terminationMessage: string;
  result: WorkerResult;
  /** stdout's pino lines, parsed. */
  logs: Record<string, unknown>[];
}

export interface WorkerOptions {
  /** Run as this uid and gid, with no supplementary groups (setpriv), as a non-root pod would. */
  uid?: number;
  /** Called with each stdout line while the worker runs; may signal the process. */
  onLog?: (line: Record<string, unknown>, signal: (s: NodeJS.Signals) => void) => void;
  /** Run with this hostname, in a UTS namespace of its own, as a pod's `spec.hostname` gives it. */
  hostname?: string;
}

/** `argv` in UTS and PID namespaces of its own (as a pod's container is) with `hostname`; it dies with its parent. */
export function inOwnHost(hostname: string, argv: readonly string[], o: { pid?: boolean } = {}): string[] {
  const pid = o.pid ? ["--pid", "--fork", "--kill-child"] : [];
  return ["unshare", "--uts", ...pid, "--", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, ...argv];
}

/**
 * Runs `node functions/worker/main.ts <command>` with exactly the given environment plus PATH, as a worker container
 * runs it, and reads back its termination message.
 */
export async function runWorker(command: WorkerCommand, env: Env, o: WorkerOptions = {}): Promise<WorkerRun> {
  const run = await runWorkerProcess(command, env, o);
  const decoded = decodeResult(run.terminationMessage);
  if (!decoded.ok) throw new Error(`${decoded.error}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  const logs = run.stdout
    .split("\n")
    .filter((l) => l.trim())
    .map(parseLog);
  return { ...run, result: decoded.result, logs };
}

/** The worker process alone, whatever its termination message holds. */
export async function runWorkerProcess(command: string, env: Env, o: WorkerOptions = {}): Promise<Omit<WorkerRun, "result" | "logs">> {
  const dir = await tempDir("term");
  const terminationPath = path.join(dir, "termination-log");
  if (o.uid !== undefined) await chmod(dir, 0o777);
  // The pod's environment as the kubelet builds it: the repository Secret's keys (restic's repository variables
  // here) under the worker Job's envFrom prefix, the rest as the Job's env.
  const secret = Object.fromEntries(Object.entries(env).filter(([k]) => isRepositoryVariable(k)));
  const settings = Object.fromEntries(Object.entries(env).filter(([k]) => !isRepositoryVariable(k)));
  const fullEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, TERMINATION_MESSAGE_PATH: terminationPath, ...podEnvironment(secret, settings) };
  const node = [process.execPath, workerMain, command];
  const user = o.uid === undefined ? node : ["setpriv", `--reuid=${o.uid}`, `--regid=${o.uid}`, "--clear-groups", ...node];
  const argv = o.hostname ? inOwnHost(o.hostname, user) : user;
  const child = spawn(argv[0] ?? "", argv.slice(1), { env: fullEnv, stdio: ["ignore", "pipe", "pipe"], cwd: dir });
  let stdout = "";
  let stderr = "";
  let pending = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    pending += chunk.toString();
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) o.onLog?.(parseLog(line), (s) => child.kill(s));
  });
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exitCode = await new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  const terminationMessage = await readFile(terminationPath, "utf8").catch(() => "");
  await rm(dir, { recursive: true, force: true });
  return { exitCode, stdout, stderr, terminationMessage };
}

function parseLog(line: string): Record<string, unknown> {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return { unparsed: line };
  }
}

/** restic run directly, for setting up and inspecting repositories. */
export async function restic(args: string[], env: Env, cwd?: string): Promise<string> {
  const { stdout } = await exec(inject("restic"), args, {
    cwd,
    env: { PATH: process.env.PATH ?? "", HOME: tmpdir(), TZ: "UTC", ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout;
}

export interface ListedSnapshot {
  id: string;
  time: string;
  hostname: string;
  tags?: string[] | null;
}

export async function listSnapshots(env: Env): Promise<ListedSnapshot[]> {
  return JSON.parse(await restic(["snapshots", "--json", "--no-lock"], env)) as ListedSnapshot[];
}

/** A loopback port with nothing listening on it: a repository server that is down. */
export const closedPort = freePort;

/** One entry of a tree as a restore must reproduce it. */
export interface Entry {
  path: string;
  type: "file" | "dir" | "symlink" | "fifo" | "chardev" | "blockdev";
  mode: string;
  uid: number;
  gid: number;
  mtimeMs?: number;
  sha256?: string;
  target?: string;
  /** A device node's device number. */
  rdev?: number;
  /** Entries that share an inode, by the first path seen: hard links. */
  linkedTo?: string;
  /** With `holes`: 512-byte blocks allocated, which shows whether a sparse file stayed sparse. */
  blocks?: number;
  /** With `xattr`: every extended attribute, `name=0xhex`, sorted and joined by `;`. */
  xattrs?: string;
}

/** A file's SHA-256, streamed: a sparse file may be far larger than what it holds. */
function sha256Of(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    createReadStream(file)
      .on("error", reject)
      .on("data", (chunk) => hash.update(chunk))
      .on("end", () => resolve(hash.digest("hex")));
  });
}

/**
 * Every extended attribute below `root`, by path relative to it, from one `getfattr -R` (not one per file).
 * getfattr writes control characters and backslashes of a name as `\ooo` octal escapes.
 */
async function extendedAttributes(root: string): Promise<Map<string, string>> {
  const { stdout } = await exec("getfattr", ["-R", "-h", "-d", "-m", "-", "-e", "hex", "--absolute-names", root], {
    maxBuffer: 256 * 1024 * 1024,
    encoding: "buffer",
  });
  const out = new Map<string, string>();
  for (const block of stdout.toString("latin1").split("\n\n")) {
    const [head, ...attrs] = block.split("\n").filter((l) => l !== "");
    if (!head?.startsWith("# file: ")) continue;
    const name = Buffer.from(
      head.slice("# file: ".length).replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
      "latin1",
    ).toString("utf8");
    out.set(path.relative(root, name), attrs.sort().join(";"));
  }
  return out;
}

/**
 * Every entry below a directory (not the directory itself), sorted, with content hashes, link targets and device
 * numbers. FIFOs and devices are listed, never opened. `holes` adds allocated blocks, `xattr` every extended
 * attribute.
 */
export async function manifest(root: string, also: { holes?: boolean; xattr?: boolean } = {}): Promise<Entry[]> {
  const out: Entry[] = [];
  const inodes = new Map<number, string>();
  const xattrs = also.xattr ? await extendedAttributes(root) : new Map<string, string>();
  async function walk(dir: string): Promise<void> {
    for (const name of (await readdir(dir)).sort()) {
      const full = path.join(dir, name);
      const rel = path.relative(root, full);
      const st = await lstat(full);
      const x = xattrs.get(rel);
      const base = { path: rel, mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid, ...(x ? { xattrs: x } : {}) };
      if (st.isSymbolicLink()) {
        out.push({ ...base, type: "symlink", target: await readlink(full) });
      } else if (st.isDirectory()) {
        out.push({ ...base, type: "dir", mtimeMs: Math.floor(st.mtimeMs) });
        await walk(full);
      } else if (st.isFIFO()) {
        out.push({ ...base, type: "fifo" });
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        out.push({ ...base, type: st.isCharacterDevice() ? "chardev" : "blockdev", rdev: st.rdev });
      } else {
        const first = st.nlink > 1 ? inodes.get(st.ino) : undefined;
        if (st.nlink > 1 && !first) inodes.set(st.ino, rel);
        out.push({
          ...base,
          type: "file",
          mtimeMs: Math.floor(st.mtimeMs),
          sha256: await sha256Of(full),
          ...(first ? { linkedTo: first } : {}),
          ...(also.holes ? { blocks: st.blocks } : {}),
        });
      }
    }
  }
  await walk(root);
  return out;
}

/** Random bytes, so that nothing deduplicates by accident. */
export function noise(size: number): Buffer {
  return randomBytes(size);
}

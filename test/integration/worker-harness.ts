// What the worker's integration tests share: a real rest-server on loopback, the worker run as the local node
// agent runs it (a process with the pod's environment), restic itself for setting up and inspecting
// repositories, and file trees to back up and compare.
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmod, copyFile, lstat, mkdtemp, readdir, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { inject } from "vitest";
import { freePort } from "../../cluster/processes.ts";
import { startRestServer as startRealRestServer, type RestServer } from "../../cluster/rest-server.ts";
import { decodeResult, type WorkerCommand, type WorkerResult } from "../../lib/restic/result.ts";

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

/** rest-server with htpasswd authentication and private repositories, on a free loopback port. */
export function startRestServer(o: { dataDir: string; users: Record<string, string>; appendOnly?: boolean }): Promise<RestServer> {
  return startRealRestServer({ binary: inject("restServer"), ...o });
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
}

/**
 * Runs `node functions/worker/main.ts <command>` with exactly the given environment plus PATH, as the node agent
 * runs a worker container, and reads back its termination message.
 */
export async function runWorker(command: WorkerCommand, env: Env, o: WorkerOptions = {}): Promise<WorkerRun> {
  const run = await runWorkerProcess(command, env, o);
  const decoded = decodeResult(run.terminationMessage);
  if (!decoded.ok) throw new Error(`${decoded.error}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  const logs = run.stdout.split("\n").filter((l) => l.trim()).map(parseLog);
  return { ...run, result: decoded.result, logs };
}

/** The worker process alone, whatever its termination message holds. */
export async function runWorkerProcess(command: string, env: Env, o: WorkerOptions = {}): Promise<Omit<WorkerRun, "result" | "logs">> {
  const dir = await tempDir("term");
  const terminationPath = path.join(dir, "termination-log");
  if (o.uid !== undefined) await chmod(dir, 0o777);
  const fullEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, TERMINATION_MESSAGE_PATH: terminationPath, ...env };
  const node = [process.execPath, workerMain, command];
  const argv = o.uid === undefined ? node : ["setpriv", `--reuid=${o.uid}`, `--regid=${o.uid}`, "--clear-groups", ...node];
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
  type: "file" | "dir" | "symlink" | "fifo";
  mode: string;
  uid: number;
  gid: number;
  mtimeMs?: number;
  sha256?: string;
  target?: string;
  /** Entries that share an inode, by the first path seen: hard links. */
  linkedTo?: string;
  /** With `holes`: 512-byte blocks allocated, which shows whether a sparse file stayed sparse. */
  blocks?: number;
  /** With `xattr`: the value of the `user.walle` extended attribute, when set. */
  xattr?: string;
}

/**
 * Every entry below a directory (not the directory itself), sorted, with content hashes and link targets. FIFOs
 * are listed, never opened. `holes` and `xattr` add allocated blocks and the `user.walle` attribute (getfattr).
 */
export async function manifest(root: string, also: { holes?: boolean; xattr?: boolean } = {}): Promise<Entry[]> {
  const out: Entry[] = [];
  const inodes = new Map<number, string>();
  async function walk(dir: string): Promise<void> {
    for (const name of (await readdir(dir)).sort()) {
      const full = path.join(dir, name);
      const rel = path.relative(root, full);
      const st = await lstat(full);
      const base = { path: rel, mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid };
      if (st.isSymbolicLink()) {
        out.push({ ...base, type: "symlink", target: await readlink(full) });
      } else if (st.isDirectory()) {
        out.push({ ...base, type: "dir", mtimeMs: Math.floor(st.mtimeMs) });
        await walk(full);
      } else if (st.isFIFO()) {
        out.push({ ...base, type: "fifo" });
      } else {
        const first = st.nlink > 1 ? inodes.get(st.ino) : undefined;
        if (st.nlink > 1 && !first) inodes.set(st.ino, rel);
        const sha256 = createHash("sha256").update(await readFile(full)).digest("hex");
        const xattr = also.xattr ? (await exec("getfattr", ["--absolute-names", "--only-values", "-n", "user.walle", full]).catch(() => ({ stdout: "" }))).stdout : "";
        out.push({ ...base, type: "file", mtimeMs: Math.floor(st.mtimeMs), sha256, ...(first ? { linkedTo: first } : {}), ...(also.holes ? { blocks: st.blocks } : {}), ...(xattr ? { xattr } : {}) });
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

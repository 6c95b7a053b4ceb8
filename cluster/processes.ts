// Child processes of the local cluster: started with their output in a log file, killed with their parent.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import net from "node:net";
import { once } from "node:events";

export interface Managed {
  readonly name: string;
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Resolves with the exit code (or signal) once the process has ended. */
  readonly exited: Promise<number | string>;
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts a long-running binary. `setpriv --pdeathsig SIGKILL` makes the kernel kill it when this process dies,
 * even by SIGKILL, so a crashed harness leaves no etcd or API server behind.
 */
export function startProcess(name: string, bin: string, args: readonly string[], logFile: string, env?: NodeJS.ProcessEnv): Managed {
  const log = createWriteStream(logFile, { flags: "a" });
  const child = spawn("setpriv", ["--pdeathsig", "SIGKILL", "--", bin, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: env ?? process.env,
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const exited = new Promise<number | string>((resolve) => {
    child.on("exit", (code, signal) => resolve(code ?? signal ?? "unknown"));
    child.on("error", (err) => resolve(err.message));
  });
  return {
    name,
    child,
    logFile,
    exited,
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
      log.end();
    },
  };
}

/** A port free on `host` now (the kernel's pick of an ephemeral one). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = net.createServer();
  server.listen(0, host);
  await once(server, "listening");
  const address = server.address();
  server.close();
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

export async function tail(file: string, lines = 30): Promise<string> {
  try {
    return (await readFile(file, "utf8")).split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` until it returns true, failing early if `process` exits, or after `timeoutMs`. */
export async function waitUntil(what: string, probe: () => Promise<boolean>, timeoutMs: number, watched: readonly Managed[] = []): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const p of watched) {
      if (p.child.exitCode !== null || p.child.signalCode !== null) {
        throw new Error(`${p.name} exited (${p.child.exitCode ?? p.child.signalCode}) while waiting for ${what}:\n${await tail(p.logFile)}`);
      }
    }
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) {
      const logs = await Promise.all(watched.map(async (p) => `--- ${p.name} (${p.logFile})\n${await tail(p.logFile, 15)}`));
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${logs.join("\n")}`);
    }
    await sleep(100);
  }
}

/** A long-running process that is started again whenever it exits, as a kubelet restarts a crashed container. */
export interface Supervised {
  readonly name: string;
  /** The process running now (or the last one, while a restart waits). */
  current(): Managed;
  /** How many times it has been started again. */
  restarts(): number;
  stop(): Promise<void>;
}

/**
 * Starts a process and restarts it when it exits, after a back-off that doubles from 1 s to 30 s, as the
 * kubelet's CrashLoopBackOff does, and resets once a run has lasted a minute.
 */
export async function supervise(
  name: string,
  start: () => Promise<Managed>,
  log: (msg: string, extra?: Record<string, unknown>) => void = () => {},
): Promise<Supervised> {
  let proc = await start();
  let restarts = 0;
  let stopped = false;
  let wake: (() => void) | undefined;
  const loop = (async () => {
    let backoff = 1000;
    let since = Date.now();
    while (!stopped) {
      const how = await proc.exited;
      if (stopped) return;
      if (Date.now() - since > 60_000) backoff = 1000;
      log(`${name} exited; restarting`, { exit: how, inMs: backoff, logFile: proc.logFile });
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, backoff).unref();
      });
      backoff = Math.min(backoff * 2, 30_000);
      if (stopped) return;
      since = Date.now();
      try {
        proc = await start();
        restarts += 1;
      } catch (err) {
        log(`${name} could not be restarted`, { err: String(err) }); // the dead process's exit is awaited again: back off, retry
      }
    }
  })();
  return {
    name,
    current: () => proc,
    restarts: () => restarts,
    async stop() {
      stopped = true;
      wake?.();
      await proc.stop();
      await loop;
    },
  };
}

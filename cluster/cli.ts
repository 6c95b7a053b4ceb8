// npm run cluster -- up | down | status
//   up     starts the local cluster in the background and returns once it is ready; prints the KUBECONFIG.
//   down   stops it and everything it started.
// WALLE_CLUSTER_DIR moves its state (default /var/tmp/walle-local).
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { STATE_ROOT } from "./index.ts";
import { sleep, tail } from "./processes.ts";

const stateDir = process.env.WALLE_CLUSTER_DIR ?? path.join(STATE_ROOT, "walle-local");
const readyFile = path.join(stateDir, "ready.json");
const daemonLog = path.join(stateDir, "..", `${path.basename(stateDir)}.log`);

interface Ready {
  pid: number;
  kubeconfig: string;
  server: string;
}

function readReady(): Ready | undefined {
  if (!existsSync(readyFile)) return undefined;
  const ready = JSON.parse(readFileSync(readyFile, "utf8")) as Ready;
  return alive(ready.pid) ? ready : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function up(): Promise<void> {
  const running = readReady();
  if (running) {
    console.log(`The local cluster is already running (${running.server}).\nexport KUBECONFIG=${running.kubeconfig}`);
    return;
  }
  await rm(stateDir, { recursive: true, force: true });
  await mkdir(stateDir, { recursive: true });
  const started = Date.now();
  const out = openSync(daemonLog, "w");
  const daemon = spawn(process.execPath, [fileURLToPath(new URL("./daemon.ts", import.meta.url)), stateDir], {
    detached: true,
    stdio: ["ignore", out, out],
  });
  closeSync(out);
  daemon.unref();
  console.log(`Starting the local cluster in ${stateDir} (log: ${daemonLog}); a cold toolchain builds first.`);
  for (;;) {
    const ready = readReady();
    if (ready) {
      console.log(`The local cluster is ready in ${((Date.now() - started) / 1000).toFixed(1)} s (${ready.server}).`);
      console.log(`export KUBECONFIG=${ready.kubeconfig}`);
      return;
    }
    if (daemon.exitCode !== null || !alive(daemon.pid ?? -1)) {
      console.error(`The local cluster failed to start:\n${await tail(daemonLog, 40)}`);
      process.exit(1);
    }
    await sleep(200);
  }
}

async function down(): Promise<void> {
  const ready = existsSync(readyFile) ? (JSON.parse(readFileSync(readyFile, "utf8")) as Ready) : undefined;
  if (!ready || !alive(ready.pid)) {
    console.log("The local cluster is not running.");
    return;
  }
  process.kill(ready.pid, "SIGTERM");
  const deadline = Date.now() + 30_000;
  while (alive(ready.pid) && Date.now() < deadline) await sleep(100);
  if (alive(ready.pid)) process.kill(ready.pid, "SIGKILL"); // its children die with it (pdeathsig)
  console.log("The local cluster is stopped.");
}

async function status(): Promise<void> {
  const ready = readReady();
  console.log(ready ? `running (${ready.server})\nexport KUBECONFIG=${ready.kubeconfig}` : "not running");
}

const commands: Record<string, () => Promise<void>> = { up, down, status };
const cmd = commands[process.argv[2] ?? ""];
if (!cmd) {
  console.error("usage: npm run cluster -- up | down | status");
  process.exit(2);
}
await cmd();

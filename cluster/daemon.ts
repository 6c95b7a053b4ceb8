// The process that `npm run cluster -- up` leaves running: it owns the local cluster until SIGTERM/SIGINT.
import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { startCluster } from "./index.ts";

const stateDir = process.argv[2];
if (!stateDir) throw new Error("usage: daemon.ts <state dir>");
const log = (msg: string, extra?: Record<string, unknown>) => console.log(JSON.stringify({ time: new Date().toISOString(), msg, ...extra }));

const cluster = await startCluster({ stateDir, log });
const readyFile = path.join(stateDir, "ready.json");
await writeFile(readyFile, JSON.stringify({ pid: process.pid, kubeconfig: cluster.kubeconfig, server: cluster.server }));

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  log("Stopping the local cluster.");
  await rm(readyFile, { force: true });
  await cluster.stop();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());

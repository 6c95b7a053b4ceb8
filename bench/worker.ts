// Bench group `worker`: what the worker costs on top of restic (DESIGN.md §7: within 3% of a bare `restic backup`).
//
// Both sides run the same restic command over the same generated data (about 1 GiB, mixed file sizes,
// incompressible) into a fresh local repository, measured as whole processes from spawn to exit: the worker's
// Node start, config parsing, JSON decoding and logging are all inside its time. Rounds alternate which side goes
// first, so neither always meets a cooler cache or a busier disk, and the figure is the ratio of the median times.
//
// BENCH_WORKER_MIB (default 1024) and BENCH_WORKER_ROUNDS (default 3) scale it; RESTIC_BINARY picks restic,
// otherwise the toolchain's.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { resolveResticBinaries } from "../cluster/toolchain.ts";
import { backupArgs, resticEnvironment } from "../lib/restic/args.ts";
import type { Figure } from "./main.ts";

const workerMain = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../functions/worker/main.ts");
const password = "bench-password";

/** Files of each size per GiB: 384 MiB in big files, 384 MiB in medium, 192 MiB in small, 64 MiB in tiny. */
const mix = [
  { size: 128 * 1024 * 1024, count: 3 },
  { size: 4 * 1024 * 1024, count: 96 },
  { size: 64 * 1024, count: 3072 },
  { size: 4 * 1024, count: 16384 },
];

export async function worker(): Promise<Figure[]> {
  const mib = Number(process.env.BENCH_WORKER_MIB ?? 1024);
  const rounds = Number(process.env.BENCH_WORKER_ROUNDS ?? 3);
  const restic = process.env.RESTIC_BINARY ?? (await resolveResticBinaries((l) => console.error(l))).restic;
  const dir = await mkdtemp(path.join(tmpdir(), "walle-bench-worker-"));
  try {
    const source = path.join(dir, "source");
    const bytes = await generate(source, mib / 1024);
    console.error(`worker: generated ${(bytes / 2 ** 20).toFixed(0)} MiB in ${source}; ${rounds} rounds.`);
    const bare: number[] = [];
    const withWorker: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const sides = [
        async () => bare.push(await timeBare(restic, source, await freshRepository(restic, dir, `bare-${round}`))),
        async () => withWorker.push(await timeWorker(restic, source, await freshRepository(restic, dir, `worker-${round}`), dir)),
      ];
      for (const side of round % 2 === 0 ? sides : sides.reverse()) await side();
      console.error(`worker: round ${round + 1}: bare restic ${bare.at(-1)?.toFixed(2)} s, worker ${withWorker.at(-1)?.toFixed(2)} s.`);
    }
    const ratio = Math.round((median(withWorker) / median(bare)) * 1000) / 1000;
    return [{ name: "worker.backup_time_ratio", value: ratio, unit: "ratio", target: 1.03, ok: ratio <= 1.03 }];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Writes the mix, scaled, in 64 directories; returns the bytes written. */
async function generate(root: string, scale: number): Promise<number> {
  let total = 0;
  let n = 0;
  for (const { size, count } of mix) {
    for (let i = 0; i < Math.max(1, Math.round(count * scale)); i++, n++) {
      const dir = path.join(root, `d${n % 64}`);
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, `f${n}-${size}.bin`), randomBytes(size));
      total += size;
    }
  }
  return total;
}

function env(repository: string): Record<string, string> {
  return { PATH: process.env.PATH ?? "", HOME: path.dirname(repository), RESTIC_REPOSITORY: repository, RESTIC_PASSWORD: password, TZ: "UTC" };
}

async function freshRepository(restic: string, dir: string, name: string): Promise<string> {
  const repository = path.join(dir, name);
  await run(restic, ["init"], { env: env(repository) });
  return repository;
}

/**
 * restic alone, with the very command line and environment the worker gives it, so the ratio isolates what the
 * worker adds (Node, config, decoding, logging) rather than the cost of restic's own options.
 */
async function timeBare(restic: string, source: string, repository: string): Promise<number> {
  const args = backupArgs({ host: "bench", owner: { pvc: "bench", namespace: "bench" }, sourcePath: source, lockWait: "5m" });
  return run(restic, args, { env: resticEnvironment(env(repository)), cwd: source });
}

async function timeWorker(restic: string, source: string, repository: string, dir: string): Promise<number> {
  const workerEnv = {
    ...env(repository),
    RESTIC_BINARY: restic,
    CLUSTER_NAME: "bench",
    SOURCE_PATH: source,
    PVC_NAME: "bench",
    PVC_NAMESPACE: "bench",
    TERMINATION_MESSAGE_PATH: path.join(dir, "termination-log"),
  };
  return run(process.execPath, [workerMain, "backup"], { env: workerEnv });
}

/** Runs a process to its end, its output drained and dropped; returns its wall time in seconds. */
function run(command: string, args: string[], o: { env: Record<string, string>; cwd?: string }): Promise<number> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: o.env, cwd: o.cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stdout.resume();
    child.stderr.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
    child.once("error", reject);
    child.once("close", (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code === 0) resolve(seconds);
      else reject(new Error(`${path.basename(command)} ${args.join(" ")} exited with ${code}: ${stderr}`));
    });
  });
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

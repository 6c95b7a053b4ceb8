// Bench group `worker`: what the worker costs on top of restic (docs/architecture.md, Targets: within 3% of a bare `restic backup`,
// and within 5% of a bare `restic restore` of the same snapshot).
//
// Each side runs the same restic command over the same generated data (about 1 GiB, mixed file sizes,
// incompressible) into a fresh local repository, measured as a whole process from spawn to exit: the worker's
// Node start, config parsing, JSON decoding and logging are all inside its time. Rounds rotate which side goes
// first, so none always meets a cooler cache or a busier disk. A figure is the ratio of best times: on a shared
// machine, noise only ever adds time, so the best of several runs is the nearest to a side's own cost (a median
// still carries whatever load the other tenants put on half the runs).
//
// Two figures: the worker as its image runs it, bundled into one module (scripts/bundle.ts, as npm run build makes it), and as the
// local cluster runs it, from its TypeScript sources, which starts about 0.2 s slower.
//
// BENCH_WORKER_MIB (default 1024) and BENCH_WORKER_ROUNDS (default 5) scale it; RESTIC_BINARY picks restic,
// otherwise the toolchain's.
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { resolveResticBinaries } from "../cluster/toolchain.ts";
import { bundleFunction } from "../scripts/bundle.ts";
import { backupArgs, resticEnvironment, restoreArgs } from "../lib/restic/args.ts";
import { podEnvironment } from "../lib/restic/secret-env.ts";
import type { Figure } from "./main.ts";

const execFileAsync = promisify(execFile);
const sourceMain = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../functions/worker/main.ts");
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
  const rounds = Number(process.env.BENCH_WORKER_ROUNDS ?? 5);
  const restic = process.env.RESTIC_BINARY ?? (await resolveResticBinaries((l) => console.error(l))).restic;
  const dir = await mkdtemp(path.join(tmpdir(), "walle-bench-worker-"));
  try {
    const source = path.join(dir, "source");
    const bundle = path.join(dir, "worker.mjs");
    await bundleFunction("worker", bundle);
    const bytes = await generate(source, mib / 1024);
    console.error(`worker: generated ${(bytes / 2 ** 20).toFixed(0)} MiB in ${source}; ${rounds} rounds.`);
    const sides: Record<"bare" | "bundled" | "sources", (repository: string) => Promise<number>> = {
      bare: (repository) => timeBare(restic, source, repository),
      bundled: (repository) => timeWorker(bundle, restic, source, repository, dir),
      sources: (repository) => timeWorker(sourceMain, restic, source, repository, dir),
    };
    // Each backup into a fresh repository.
    const best = await bestOf("backup", rounds, sides, (repository) => run(restic, ["init"], { env: env(repository) }), dir);
    const restore = await restoreRatio(restic, source, bundle, dir, rounds);
    return [
      ratio("worker.backup_time_ratio", best.bundled / best.bare, 1.03),
      ratio("worker.source_backup_time_ratio", best.sources / best.bare, 1.03),
      ratio("worker.restore_time_ratio", restore, 1.05),
    ];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `sync`, untimed: each run writes a gigabyte, and its write-back must not fall into the next side's time. */
function syncDisks(): Promise<number> {
  return run("sync", [], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
}

/**
 * One timed run of a side into a fresh directory under `dir` (made by `prepare`), deleted and synced afterwards.
 * First one untimed run, so that no timed run is the one that first reads the data or writes the disk; then
 * `rounds` rounds, each starting with another side. The best time of each side: on a shared machine noise only
 * ever adds time.
 */
async function bestOf<K extends string>(
  what: string,
  rounds: number,
  sides: Record<K, (target: string) => Promise<number>>,
  prepare: (target: string) => Promise<unknown>,
  dir: string,
): Promise<Record<K, number>> {
  const once = async (name: string, side: (target: string) => Promise<number>) => {
    const target = path.join(dir, `${what}-${name}`);
    await prepare(target);
    await syncDisks();
    const seconds = await side(target);
    await rm(target, { recursive: true, force: true });
    await syncDisks();
    return seconds;
  };
  const names = Object.keys(sides) as K[];
  await once("warm-up", sides[names[0] as K]);
  const best = Object.fromEntries(names.map((k) => [k, Infinity])) as Record<K, number>;
  for (let round = 0; round < rounds; round++) {
    const times: string[] = [];
    for (const side of rotate(names, round)) {
      const seconds = await once(`${side}-${round}`, sides[side]);
      best[side] = Math.min(best[side], seconds);
      times.push(`${side} ${seconds.toFixed(2)} s`);
    }
    console.error(`worker: ${what} round ${round + 1}: ${times.join(", ")}.`);
  }
  return best;
}

function ratio(name: string, value: number, target: number): Figure {
  const rounded = Math.round(value * 1000) / 1000;
  return { name, value: rounded, unit: "ratio", target, ok: rounded <= target };
}

/**
 * The worker's restore against a bare `restic restore` of the same snapshot, with the very arguments the worker
 * gives restic (`--sparse`, `--delete`), each into a fresh empty target that is deleted and synced, untimed,
 * before the next side runs. Best of `rounds` each, sides rotated, as for the backup.
 */
async function restoreRatio(restic: string, source: string, bundle: string, dir: string, rounds: number): Promise<number> {
  const repository = await freshRepository(restic, dir, "restore-source");
  await timeBare(restic, source, repository);
  const { stdout } = await execFileAsync(restic, ["snapshots", "--json", "latest"], { env: resticEnvironment(env(repository)), maxBuffer: 16 * 1024 * 1024 });
  const snapshotId = (JSON.parse(stdout) as { id: string }[])[0]?.id ?? "";
  const sides: Record<"bare" | "bundled", (target: string) => Promise<number>> = {
    bare: (target) =>
      run(restic, restoreArgs({ snapshotId, targetPath: target, deleteOthers: true, lockWait: "5m" }), { env: resticEnvironment(env(repository)) }),
    bundled: (target) =>
      run(process.execPath, [bundle, "restore"], {
        env: {
          ...workerEnv(repository),
          RESTIC_BINARY: restic,
          RESTORE_TARGET_PATH: target,
          RESTORE_SNAPSHOT: snapshotId,
          RESTORE_DELETE: "true",
          TERMINATION_MESSAGE_PATH: path.join(dir, "termination-log"),
        },
      }),
  };
  // Each restore into a fresh empty target.
  const best = await bestOf("restore", rounds, sides, (target) => mkdir(target), dir);
  await rm(repository, { recursive: true, force: true });
  return best.bundled / best.bare;
}

/** Each round starts with another side, so none always runs first, or always right after another. */
function rotate<T>(items: readonly T[], by: number): T[] {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
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

/** The same, as a worker pod gets it: the repository's variables from its Secret, under the envFrom prefix. */
function workerEnv(repository: string): Record<string, string> {
  const { RESTIC_REPOSITORY, RESTIC_PASSWORD, ...settings } = env(repository);
  return podEnvironment({ RESTIC_REPOSITORY, RESTIC_PASSWORD }, settings);
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

async function timeWorker(entry: string, restic: string, source: string, repository: string, dir: string): Promise<number> {
  const settings = {
    ...workerEnv(repository),
    RESTIC_BINARY: restic,
    CLUSTER_NAME: "bench",
    SOURCE_PATH: source,
    PVC_NAME: "bench",
    PVC_NAMESPACE: "bench",
    TERMINATION_MESSAGE_PATH: path.join(dir, "termination-log"),
  };
  return run(process.execPath, [entry, "backup"], { env: settings });
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

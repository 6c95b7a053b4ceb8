// Bundles one function's entry into one ESM file for Node 24 (plus chunks for its dynamic imports), as its
// container image runs it.
import { build } from "esbuild";
import { rm } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { repoRoot } from "../cluster/toolchain.ts";

export const functionNames = ["reconcile", "tick", "worker"] as const;
export type FunctionName = (typeof functionNames)[number];

/**
 * How Node runs each function's bundle in its image (the Dockerfile's ENTRYPOINT spells the same flags). The
 * functions that serve events trade V8's mid-tier JIT and a large young generation for memory: measured on the
 * reconcile bundle over 1,000 events, Maglev's code and feedback held about 30 MB of RSS, and the default
 * semi-space about 10 MB more, for I/O-bound work that gains nothing from either. The worker's time is restic's.
 */
export const nodeFlags: Readonly<Record<FunctionName, readonly string[]>> = {
  reconcile: ["--max-semi-space-size=1", "--no-maglev"],
  // The tick is a short batch that holds the cluster's lists at once: with a 1 MB young generation, V8 spent
  // most of a 10,000-schedule evaluation in GC (bench/tick.ts); 8 MB kept it under its 300 MB target.
  tick: ["--max-semi-space-size=8"],
  worker: [],
};

/**
 * Node's compile cache beside the bundle (NODE_COMPILE_CACHE), filled when the image is built, so a cold start
 * reads compiled code instead of parsing the bundle again. A read-only root filesystem only stops it updating.
 */
export const COMPILE_CACHE_DIR = ".node-compile-cache";

export function functionEntry(name: FunctionName): string {
  return path.join(repoRoot, "functions", name, "main.ts");
}

/**
 * Bundles `name` into `outfile`. What the function imports dynamically (client-node, for kubeconfig files) goes
 * into chunks in `<outfile's name>-chunks/` beside it, loaded only if that path runs: inlined, its 17 MB would
 * be parsed at every start (118 MB RSS in-cluster instead of 58 MB when we measured).
 */
export async function bundleFunction(name: FunctionName, outfile: string): Promise<void> {
  await bundleEntry(functionEntry(name), outfile, "node24");
}

/** Bundles any entry so (kubectl walle's targets the oldest Node it runs on). */
export async function bundleEntry(entry: string, outfile: string, target: string): Promise<void> {
  const base = path.basename(outfile, path.extname(outfile));
  await rm(path.join(path.dirname(outfile), `${base}-chunks`), { recursive: true, force: true }); // no stale chunks
  await build({
    entryPoints: { [base]: entry },
    outdir: path.dirname(outfile),
    outExtension: { ".js": path.extname(outfile) || ".js" },
    splitting: true,
    chunkNames: `${base}-chunks/[name]-[hash]`,
    bundle: true,
    platform: "node",
    target,
    format: "esm",
    // Smaller to parse at every cold start; the linked source map keeps stack traces readable.
    minify: true,
    sourcemap: "linked",
    legalComments: "linked",
    // Some CommonJS dependencies call require(); give the ESM bundle one.
    banner: { js: "import { createRequire as __walleRequire } from 'node:module'; const require = __walleRequire(import.meta.url);" },
    logLevel: "warning",
  });
}

/**
 * Fills the compile cache of a bundle: loads it (its `import.meta.main` is false, so the function does not
 * start) under NODE_COMPILE_CACHE, which Node writes out at exit.
 */
export async function fillCompileCache(node: string, bundle: string, flags: readonly string[]): Promise<string> {
  const dir = path.join(path.dirname(bundle), COMPILE_CACHE_DIR);
  await rm(dir, { recursive: true, force: true });
  const { execFile } = await import("node:child_process");
  const { promisify } = await import("node:util");
  await promisify(execFile)(node, [...flags, "--input-type=module", "-e", `await import(${JSON.stringify(pathToFileURL(bundle).href)})`], {
    env: { PATH: process.env.PATH ?? "", NODE_COMPILE_CACHE: dir },
  });
  return dir;
}

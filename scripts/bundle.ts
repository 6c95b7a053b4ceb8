// Bundles one function's entry into a single ESM file for Node 24, as its container image runs it.
import { build } from "esbuild";
import path from "node:path";
import { repoRoot } from "../cluster/toolchain.ts";

export const functionNames = ["reconcile", "tick", "worker"] as const;
export type FunctionName = (typeof functionNames)[number];

export function functionEntry(name: FunctionName): string {
  return path.join(repoRoot, "functions", name, "main.ts");
}

export async function bundleFunction(name: FunctionName, outfile: string): Promise<void> {
  await build({
    entryPoints: [functionEntry(name)],
    outfile,
    bundle: true,
    platform: "node",
    target: "node24",
    format: "esm",
    sourcemap: "linked",
    legalComments: "linked",
    // Some CommonJS dependencies call require(); give the ESM bundle one.
    banner: { js: "import { createRequire as __walleRequire } from 'node:module'; const require = __walleRequire(import.meta.url);" },
    logLevel: "warning",
  });
}

// Writes what is generated: crds/ from the zod schemas in lib/api (the four CRDs, the tenant-guard policy and a
// kustomization), and the Helm chart helm/charts/walle from the kustomization (scripts/chart.ts).
//
//   npm run crdgen                            regenerate crds/ and the chart
//   npm run crdgen -- --check                 exit 1 if either differs from what would be generated (CI, tests)
//   npm run --silent crdgen -- --stdout       print the four CRDs, as the original's `crdgen | kubectl apply -f -`
//
// Both directories hold only generated files, so a file there that is not generated any more is stale too.

import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { generatedFiles } from "../lib/api/manifests.ts";
import type { GeneratedFile } from "../lib/api/manifests.ts";
import { CHART_DIR, chartFiles } from "./chart.ts";

const ROOT = resolve(import.meta.dirname, "..");

interface Target {
  /** Relative to the repository. */
  readonly dir: string;
  readonly files: readonly GeneratedFile[];
}

interface Drift {
  readonly changed: string[];
  readonly stale: string[];
}

function existingFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && /\.(ya?ml|json)$/.test(e.name))
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

function drift(target: Target): Drift {
  const dir = join(ROOT, target.dir);
  const changed = target.files
    .filter((file) => {
      const path = join(dir, file.name);
      return !existsSync(path) || readFileSync(path, "utf8") !== file.content;
    })
    .map((file) => file.name);
  const names = new Set(target.files.map((file) => file.name));
  const stale = existingFiles(dir).filter((name) => !names.has(name));
  return { changed, stale };
}

function check(targets: readonly Target[]): number {
  let status = 0;
  for (const target of targets) {
    const { changed, stale } = drift(target);
    if (changed.length === 0 && stale.length === 0) {
      console.log(`${target.dir}/ is up to date (${target.files.length} files).`);
      continue;
    }
    for (const name of changed) console.error(`${target.dir}/${name} is out of date.`);
    for (const name of stale) console.error(`${target.dir}/${name} is not generated any more.`);
    status = 1;
  }
  if (status !== 0) console.error("Run `npm run crdgen` and commit the result.");
  return status;
}

function write(targets: readonly Target[]): number {
  for (const target of targets) {
    const dir = join(ROOT, target.dir);
    const { changed, stale } = drift(target);
    for (const file of target.files) {
      if (!changed.includes(file.name)) continue;
      mkdirSync(dirname(join(dir, file.name)), { recursive: true });
      writeFileSync(join(dir, file.name), file.content);
    }
    for (const name of stale) rmSync(join(dir, name));
    console.log(`Wrote ${changed.length} and removed ${stale.length} of the files in ${target.dir}/.`);
  }
  return 0;
}

const crds = generatedFiles();
if (process.argv.includes("--stdout")) {
  process.stdout.write(
    crds
      .filter((file) => file.name.startsWith("ros.io_"))
      .map((file) => file.content)
      .join(""),
  );
} else {
  // The chart is made from crds/ as written, so crds/ is written first.
  const crdTarget = { dir: "crds", files: crds };
  if (!process.argv.includes("--check")) write([crdTarget]);
  const targets = [crdTarget, { dir: CHART_DIR, files: chartFiles() }];
  process.exitCode = process.argv.includes("--check") ? check(targets) : write(targets.slice(1));
}

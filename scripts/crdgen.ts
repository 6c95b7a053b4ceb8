// Writes crds/ from the zod schemas in lib/api: the four CRDs, the tenant-guard policy and a kustomization.
//
//   npm run crdgen              regenerate crds/
//   npm run crdgen -- --check   exit 1 if crds/ differs from what would be generated (for CI and the tests)
//
// crds/ holds only generated files, so a yaml file there that is not generated any more is stale too.

import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { generatedFiles } from "../lib/api/manifests.ts";
import type { GeneratedFile } from "../lib/api/manifests.ts";

const CRDS_DIR = resolve(import.meta.dirname, "..", "crds");

interface Drift {
  readonly changed: string[];
  readonly stale: string[];
}

function existingYamlFiles(): string[] {
  if (!existsSync(CRDS_DIR)) return [];
  return readdirSync(CRDS_DIR).filter((name) => name.endsWith(".yaml") || name.endsWith(".yml"));
}

function drift(files: readonly GeneratedFile[]): Drift {
  const changed = files
    .filter((file) => {
      const path = join(CRDS_DIR, file.name);
      return !existsSync(path) || readFileSync(path, "utf8") !== file.content;
    })
    .map((file) => file.name);
  const names = new Set(files.map((file) => file.name));
  const stale = existingYamlFiles().filter((name) => !names.has(name));
  return { changed, stale };
}

function check(files: readonly GeneratedFile[]): number {
  const { changed, stale } = drift(files);
  if (changed.length === 0 && stale.length === 0) {
    console.log(`crds/ is up to date (${files.length} files).`);
    return 0;
  }
  for (const name of changed) console.error(`crds/${name} is out of date.`);
  for (const name of stale) console.error(`crds/${name} is not generated any more.`);
  console.error("Run `npm run crdgen` and commit the result.");
  return 1;
}

function write(files: readonly GeneratedFile[]): number {
  const { changed, stale } = drift(files);
  mkdirSync(CRDS_DIR, { recursive: true });
  for (const file of files) {
    if (changed.includes(file.name)) writeFileSync(join(CRDS_DIR, file.name), file.content);
  }
  for (const name of stale) rmSync(join(CRDS_DIR, name));
  console.log(`Wrote ${changed.length} and removed ${stale.length} of the files in crds/.`);
  return 0;
}

const files = generatedFiles();
process.exitCode = process.argv.includes("--check") ? check(files) : write(files);

// The container images the local node can run, laid out as their Dockerfiles lay them out: Node 24, restic,
// and the function's bundle, under a directory every user can read (the worker runs as uid 65532).
import { existsSync } from "node:fs";
import { chmod, copyFile, link, mkdir, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { bundleFunction, fillCompileCache, functionEntry, nodeFlags, type FunctionName } from "../scripts/bundle.ts";
import { NONROOT } from "../lib/core/privileges.ts";
import type { ImageResolver, LocalImage } from "./kubelet.ts";
import { buildImages, type BuiltImage, type ImageName } from "../scripts/images.ts";
import { cacheDir, ensureDebianPackages, resolveBinary } from "./toolchain.ts";

/** Walle's OCI images (scripts/images.ts), built once into the toolchain's cache and rebuilt when an input changes. */
export async function localImages(log?: (line: string) => void): Promise<Record<ImageName, BuiltImage>> {
  await ensureDebianPackages(log);
  return buildImages({ dir: path.join(cacheDir(), "images"), restic: await resolveBinary("restic", log), ...(log ? { log } : {}) });
}

/** The image repository of each function; any tag or registry runs the local build. */
export const imageRepositories: Readonly<Record<FunctionName, string>> = {
  reconcile: "walle-reconcile",
  tick: "walle-tick",
  worker: "walle-worker",
};


async function place(src: string, dest: string): Promise<void> {
  await rm(dest, { force: true });
  await link(src, dest).catch(() => copyFile(src, dest)); // a hard link is free when both sit on one filesystem
  await chmod(dest, 0o755);
}

/** The cache is written by root at build time and read by the image's non-root user. */
async function chmodTree(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    await chmod(path.join(entry.parentPath, entry.name), entry.isDirectory() ? 0o755 : 0o644);
  }
}

/** An image reference's repository name: without registry, path, tag or digest (`ghcr.io/x/walle-worker:1` → `walle-worker`). */
export function repositoryOf(image: string): string {
  const noDigest = image.split("@")[0] ?? image;
  const lastSlash = noDigest.lastIndexOf("/");
  const colon = noDigest.lastIndexOf(":");
  const name = colon > lastSlash ? noDigest.slice(0, colon) : noDigest;
  return name.slice(name.lastIndexOf("/") + 1);
}

/**
 * Builds the local images into `dir` and returns the resolver the kubelet uses. Each image holds bin/node,
 * bin/restic (the worker's) and app/main.mjs when the function's entry exists.
 */
export async function prepareImages(dir: string, restic: string): Promise<ImageResolver> {
  const images = new Map<string, LocalImage>();
  for (const [fn, repo] of Object.entries(imageRepositories) as [FunctionName, string][]) {
    const root = path.join(dir, repo);
    await mkdir(path.join(root, "bin"), { recursive: true });
    await mkdir(path.join(root, "app"), { recursive: true });
    await chmod(dir, 0o755);
    await place(process.execPath, path.join(root, "bin", "node"));
    if (fn === "worker") await place(restic, path.join(root, "bin", "restic"));
    const hasEntry = existsSync(functionEntry(fn));
    const bundle = path.join(root, "app", "main.mjs");
    const node = path.join(root, "bin", "node");
    const cache = hasEntry ? await bundleFunction(fn, bundle).then(() => fillCompileCache(node, bundle, nodeFlags[fn])) : undefined;
    if (cache) await chmodTree(cache);
    images.set(repo, {
      entrypoint: hasEntry ? [node, ...nodeFlags[fn], bundle] : [node],
      ...(cache ? { env: { NODE_COMPILE_CACHE: cache } } : {}),
      path: [path.join(root, "bin"), "/usr/local/bin", "/usr/bin", "/bin"],
      user: NONROOT,
      group: NONROOT,
      workingDir: "/",
    });
  }
  return (image) => images.get(repositoryOf(image));
}

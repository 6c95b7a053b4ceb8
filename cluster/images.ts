// The images the local node runs: Walle's own (scripts/images.ts), built once into the toolchain's cache.
import path from "node:path";
import { buildImages, type BuiltImage, type ImageName } from "../scripts/images.ts";
import { cacheDir, ensureDebianPackages, resolveBinary } from "./toolchain.ts";

/** Walle's OCI images, built once into the toolchain's cache and rebuilt when an input changes. */
export async function localImages(log?: (line: string) => void): Promise<Record<ImageName, BuiltImage>> {
  await ensureDebianPackages(log);
  return buildImages({ dir: path.join(cacheDir(), "images"), restic: await resolveBinary("restic", log), ...(log ? { log } : {}) });
}

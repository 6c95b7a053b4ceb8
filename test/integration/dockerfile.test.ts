// The Dockerfile, for users with Docker, is built here too: by buildah, from the repository root, with its base
// images given as build arguments (locally made stand-ins, scripts/images.ts standIns, since none can be pulled
// here). Each target gives the same file tree and config as `npm run images` does, and starts as that one does.
import { execFile } from "node:child_process";
import { cp, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { unmountUnder } from "../../cluster/csi-driver.ts";
import { localImages } from "../../cluster/images.ts";
import { cacheDir, repoRoot } from "../../cluster/toolchain.ts";
import { COMPILE_CACHE_DIR } from "../../scripts/bundle.ts";
import { buildStandIns, packageVersion, type BuiltImage, type ImageName } from "../../scripts/images.ts";
import { imageConfig, runBundle, unpack } from "../support/oci.ts";
import { manifest, type Entry } from "./worker-harness.ts";

const run = promisify(execFile);
const targets = ["reconcile", "tick", "worker"] as const;
type Target = (typeof targets)[number];

// buildah's `oci:` names must be lowercase, with no path component that starts with a dot.
const work = path.join(tmpdir(), `walle-dockerfile-${process.pid}`);
const built = {} as Record<Target, { theirs: BuiltImage; ours: BuiltImage; output: string }>;
const cacheInImage = path.join("app", COMPILE_CACHE_DIR);
/** The runtime bundle (umoci unpack) of a target as the Dockerfile built it, and of the same image from npm run images. */
const bundle = (target: Target, recipe: "dockerfile" | "images") => path.join(work, `unpacked-${recipe}-${target}`);

/**
 * A root filesystem as a runtime sees it (worker-harness manifest: type, owner, mode, content, link targets, hard
 * links), by path, without the times: buildah keeps each copied file's own, npm run images sets one epoch.
 */
async function fileTree(root: string, skip: (rel: string) => boolean): Promise<Record<string, Omit<Entry, "path" | "mtimeMs">>> {
  return Object.fromEntries((await manifest(root)).filter((e) => !skip(e.path)).map(({ path: rel, mtimeMs: _, ...e }) => [rel, e]));
}

/** This machine's global npmrc. */
async function npmGlobalConfig(): Promise<string> {
  const { stdout } = await run("npm", ["config", "get", "globalconfig"]);
  return stdout.trim();
}

/** A layout copied where buildah can name it. */
async function place(image: BuiltImage, name: string): Promise<string> {
  const layout = path.join(work, name);
  await cp(image.layout, layout, { recursive: true });
  return `oci:${layout}:${image.tag}`;
}

beforeAll(async () => {
  await unmountUnder(work);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const ours = await localImages();
  const bases = await buildStandIns({ dir: path.join(cacheDir(), "images"), restic: inject("restic") });
  const tag = await packageVersion();
  const storage = ["--root", path.join(work, "storage"), "--runroot", path.join(work, "run"), "--storage-driver", "overlay"];
  const buildah = (...args: string[]) => run("buildah", [...storage, "bud", "--isolation", "chroot", ...args], { maxBuffer: 64 * 1024 * 1024 });
  // The build stage's `npm ci` reaches the npm registry as this machine's npm does: with its configuration and CA
  // trust (a TLS-inspecting proxy's certificate among them), as anyone behind such a proxy gives their build base.
  // They go into the build base only (npm reads its prefix's etc/npmrc, /nodejs/etc beside Node), never into
  // the images the run stages make.
  const trust = path.join(work, "trust");
  await mkdir(trust);
  await cp("/etc/ssl/certs/ca-certificates.crt", path.join(trust, "ca-certificates.crt"));
  await cp(await npmGlobalConfig(), path.join(trust, "npmrc"));
  await writeFile(
    path.join(trust, "Containerfile"),
    `FROM ${await place(bases["walle-node-build"], "node-build")}\nCOPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\nCOPY npmrc /nodejs/etc/npmrc\n`,
  );
  await buildah("--tag", `oci:${path.join(work, "node-build-trusting")}:${tag}`, trust);
  const args = {
    RESTIC_IMAGE: await place(ours["walle-worker"], "restic"),
    NODE_BUILD_IMAGE: `oci:${path.join(work, "node-build-trusting")}:${tag}`,
    NODE_RUN_IMAGE: await place(bases["walle-node"], "node-run"),
  };
  for (const target of targets) {
    const layout = path.join(work, `built-${target}`);
    // --layers: the build stage, run once, serves the three targets. --no-hosts: as Docker, no /etc/hosts of the
    // build's own left in the images (buildah 1.28 leaves the empty file it mounts over).
    const { stdout, stderr } = await buildah(
      "--layers",
      "--no-hosts",
      ...Object.entries(args).flatMap(([k, v]) => ["--build-arg", `${k}=${v}`]),
      "--target",
      target,
      "--tag",
      `oci:${layout}:${tag}`,
      "--file",
      path.join(repoRoot, "Dockerfile"),
      repoRoot,
    );
    built[target] = { theirs: { layout, tag, digest: "" }, ours: ours[`walle-${target}` as ImageName], output: stdout + stderr };
    await unpack(built[target].theirs, bundle(target, "dockerfile"));
    await unpack(built[target].ours, bundle(target, "images"));
  }
}, 1_200_000);

afterAll(async () => {
  await unmountUnder(work); // buildah's overlay storage mounts its own directory
  await rm(work, { recursive: true, force: true });
});

describe("the Dockerfile, built by buildah against locally made bases", () => {
  it.each(targets)("%s: the same config as its image from npm run images", async (target) => {
    const [theirs, ours] = [(await imageConfig(built[target].theirs)).config, (await imageConfig(built[target].ours)).config];
    const pick = (c: typeof theirs) => ({
      User: c.User,
      Entrypoint: c.Entrypoint,
      Cmd: c.Cmd,
      Env: [...c.Env].sort(),
      WorkingDir: c.WorkingDir,
      ExposedPorts: c.ExposedPorts ?? {},
    });
    expect(pick(theirs)).toEqual(pick(ours));
  });

  it.each(targets)("%s: the same file tree as its image from npm run images, but for the compile cache's entries", async (target) => {
    const [theirs, ours] = [bundle(target, "dockerfile"), bundle(target, "images")];
    // V8's code cache differs from one run to the next (scripts/images.ts): only its directory is compared.
    const skip = (rel: string) => rel.startsWith(`${cacheInImage}/`);
    const [a, b] = [await fileTree(path.join(theirs, "rootfs"), skip), await fileTree(path.join(ours, "rootfs"), skip)];
    expect(Object.keys(a).length).toBeGreaterThan(100);
    expect(a).toEqual(b);
    if (target !== "worker") {
      expect(a[cacheInImage]).toMatchObject({ type: "dir", uid: 65532, gid: 65532 });
      expect((await readdir(path.join(theirs, "rootfs", cacheInImage), { recursive: true })).length).toBeGreaterThan(0);
    }
  });

  it("tick: starts from the Dockerfile's image, refusing bad arguments as documented", async () => {
    const refused = await runBundle(bundle("tick", "dockerfile"), { extraArgs: ["--now", "yesterday"] });
    expect(refused.exitCode, refused.stdout + refused.stderr + built.tick.output).toBe(2);
    expect(refused.stderr).toContain('--now "yesterday" is not an RFC 3339 time');
  });
});

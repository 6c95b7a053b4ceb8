// Walle's container images, built without Docker from the project's own recipe: a minimal Debian root filesystem
// (mmdebstrap, extracting only the listed packages), Node 24 from the npm package `node`, restic from the toolchain
// for the worker, each function's bundle, and a non-root user; laid out as OCI image layouts by umoci. The same
// images serve the tests, `npm start`, and a user who copies them to a registry (`skopeo copy`).
//
// The layout is the Dockerfile's: Node at /nodejs/bin/node as in distroless, the bundle under /app, restic at
// /usr/bin/restic, user 65532:65532, no shell in the functions' images. Builds are reproducible: every layer is
// a tar with sorted names, numeric owners and one fixed time, and the image configs carry that time too. Two things
// move: the Debian archive's point releases change the base layer, and Node's compile cache (the last layer of the
// reconcile and tick images) differs from run to run, as V8's code cache does.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { chmod, chown, copyFile, cp, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { NONROOT } from "../lib/core/privileges.ts";
import { repoRoot } from "../cluster/toolchain.ts";
import { bundleFunction, COMPILE_CACHE_DIR, functionEntry, nodeFlags, type FunctionName } from "./bundle.ts";

const run = promisify(execFile);

/** The one time every file, layer and config of the images carries (SOURCE_DATE_EPOCH): 2025-12-01T00:00:00Z. */
export const SOURCE_DATE_EPOCH = 1764547200;
const CREATED = new Date(SOURCE_DATE_EPOCH * 1000).toISOString().replace(".000Z", "Z");

/** The Debian release the root filesystems come from, as the Dockerfile's bookworm-based images. */
export const DEBIAN_SUITE = "bookworm";

/** A root filesystem: only these packages, extracted (no maintainer scripts, no package manager), and what goes on top. */
interface BaseSpec {
  readonly packages: readonly string[];
  /** Node 24 at /nodejs/bin/node, as distroless places it. */
  readonly node?: true;
  /** busybox's applets as links, for a shell and coreutils. */
  readonly shell?: true;
  /** npm (NPM_VERSION, from the npm registry) and `node` on the PATH, as the official node images have them. */
  readonly npm?: true;
}

/** What Node 24 needs (glibc ≥ 2.28, libstdc++, libgcc) and CA certificates for restic's https backends. */
const nodePackages = ["libc6", "libstdc++6", "libgcc-s1", "ca-certificates"];

export const bases = {
  node: { packages: nodePackages, node: true },
  /** A static busybox: the shell and coreutils of the example workload's stand-in and the pause image. */
  shell: { packages: ["busybox-static"], shell: true },
  /** The Dockerfile's build stage: Node with npm and a shell. */
  build: { packages: [...nodePackages, "busybox-static"], node: true, shell: true, npm: true },
} as const satisfies Record<string, BaseSpec>;
type Base = keyof typeof bases;

/** The npm of the build base: the one Node 24.21.0 ships. */
export const NPM_VERSION = "11.19.0";

export type ImageName = "walle-reconcile" | "walle-tick" | "walle-worker" | "walle-shell" | "walle-pause";

/** An image's config, as the OCI image config spells it. */
export interface ImageConfig {
  readonly User?: string;
  readonly Entrypoint?: readonly string[];
  readonly Cmd?: readonly string[];
  readonly Env: readonly string[];
  readonly WorkingDir?: string;
  readonly ExposedPorts?: Readonly<Record<string, object>>;
}

export interface ImageSpec {
  readonly base: Base;
  /** The function whose bundle the image runs, if any. */
  readonly fn?: FunctionName;
  readonly config: ImageConfig;
}

const NODE = "/nodejs/bin/node";
const PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const USER = `${NONROOT}:${NONROOT}`;

const functionImage = (fn: FunctionName, extra: Partial<ImageConfig> & { env?: string[] }): ImageSpec => ({
  base: "node",
  fn,
  config: {
    User: USER,
    Entrypoint: [NODE, ...nodeFlags[fn], `/app/${fn}.mjs`],
    Env: [PATH_ENV, "NODE_ENV=production", ...(extra.env ?? [])],
    WorkingDir: "/app",
    ...(extra.Cmd ? { Cmd: extra.Cmd } : {}),
    ...(extra.ExposedPorts ? { ExposedPorts: extra.ExposedPorts } : {}),
  },
});

/** Each image and its config: the Dockerfile's targets, a shell image, and the pod sandbox's pause image. */
export const images: Readonly<Record<ImageName, ImageSpec>> = {
  "walle-reconcile": functionImage("reconcile", { env: [`NODE_COMPILE_CACHE=/app/${COMPILE_CACHE_DIR}`], ExposedPorts: { "8080/tcp": {} } }),
  "walle-tick": functionImage("tick", { env: [`NODE_COMPILE_CACHE=/app/${COMPILE_CACHE_DIR}`] }),
  "walle-worker": functionImage("worker", { env: ["RESTIC_BINARY=/usr/bin/restic", "TMPDIR=/tmp"], Cmd: ["backup"] }),
  // Like alpine's: root, and `sh` when a pod names no command.
  "walle-shell": { base: "shell", config: { Env: [PATH_ENV], Cmd: ["sh"] } },
  // The sandbox's process only waits; the runtime stops it with SIGKILL.
  "walle-pause": { base: "shell", config: { User: "65535:65535", Entrypoint: ["/bin/busybox", "sleep", "infinity"], Env: [PATH_ENV] } },
};

export type StandInName = "walle-node" | "walle-node-build";

/**
 * Stand-ins for the Dockerfile's base images, which cannot be pulled here, so that buildah builds the Dockerfile
 * against them (test/integration/dockerfile.test.ts): walle-node for NODE_RUN_IMAGE (distroless nodejs24's
 * layout: Node at /nodejs/bin/node, user nonroot) and walle-node-build for NODE_BUILD_IMAGE (Node, npm, a shell).
 * The worker image serves as RESTIC_IMAGE: it holds the static restic at /usr/bin/restic.
 */
export const standIns: Readonly<Record<StandInName, ImageSpec>> = {
  "walle-node": { base: "node", config: { User: USER, Entrypoint: [NODE], Env: [PATH_ENV] } },
  "walle-node-build": { base: "build", config: { Env: [PATH_ENV], Cmd: ["node"] } },
};

/** Where a built image is: an OCI image layout and its one tag (`skopeo copy oci:<layout>:<tag> …`). */
export interface BuiltImage {
  readonly layout: string;
  readonly tag: string;
  /** The manifest's digest (sha256:…), the same for the same inputs. */
  readonly digest: string;
}

export interface BuildOptions {
  /** Where the layouts go, one directory per image; unchanged images are kept. */
  readonly dir: string;
  /** restic for the worker image (static). */
  readonly restic: string;
  /** Node 24 for the functions' images; the running Node by default. */
  readonly node?: string;
  /** The tag of every image; the package version by default. */
  readonly tag?: string;
  readonly log?: (line: string) => void;
}

async function sha256File(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** A layer from a directory tree: sorted names, owners and modes as they are, every time set to the epoch. */
async function tarTree(tree: string, out: string): Promise<void> {
  await run("tar", [
    "--create",
    `--file=${out}`,
    "--format=pax",
    "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
    "--sort=name",
    `--mtime=@${SOURCE_DATE_EPOCH}`,
    "--numeric-owner",
    "--xattrs",
    `--directory=${tree}`,
    ".",
  ]);
}

/** The base root filesystem as one layer, by mmdebstrap; cached by its package list. */
async function baseLayer(dir: string, base: Base, log: (line: string) => void): Promise<string> {
  const packages = bases[base].packages;
  const key = createHash("sha256")
    .update(`${DEBIAN_SUITE} ${packages.join(",")}`)
    .digest("hex")
    .slice(0, 12);
  const out = path.join(dir, ".bases", `${base}-${key}.tar`);
  if (existsSync(out)) return out;
  await mkdir(path.dirname(out), { recursive: true });
  log(`Extracting the ${base} root filesystem (${packages.join(", ")}) from Debian ${DEBIAN_SUITE} with mmdebstrap.`);
  const tmp = out.replace(/\.tar$/, `.${process.pid}.tmp.tar`); // concurrent builds each extract their own; mmdebstrap takes the format from the name
  await run("mmdebstrap", ["--quiet", "--variant=extract", `--include=${packages.join(",")}`, DEBIAN_SUITE, tmp], {
    env: { ...process.env, SOURCE_DATE_EPOCH: String(SOURCE_DATE_EPOCH) },
    maxBuffer: 16 * 1024 * 1024,
  });
  await rename(tmp, out);
  return out;
}

async function writeFileMode(file: string, content: string | Buffer, mode: number, owner = 0): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, content);
  await chmod(file, mode);
  await chown(file, owner, owner);
}

async function mkdirMode(dir: string, mode: number, owner = 0): Promise<void> {
  await mkdir(dir, { recursive: true });
  await chmod(dir, mode);
  await chown(dir, owner, owner);
}

/**
 * The layer over a base that makes it a system: users (root, and nonroot 65532 as distroless names it), the CA
 * bundle update-ca-certificates would write, the mount points, and what the base puts on top (BaseSpec).
 */
async function systemTree(tree: string, base: Base, root: string, node: string, npm: string | undefined): Promise<void> {
  const spec: BaseSpec = bases[base];
  await writeFileMode(
    path.join(tree, "etc/passwd"),
    `root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:${NONROOT}:${NONROOT}:nonroot:/home/nonroot:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n`,
    0o644,
  );
  await writeFileMode(path.join(tree, "etc/group"), `root:x:0:\nnonroot:x:${NONROOT}:\nnogroup:x:65534:\n`, 0o644);
  await writeFileMode(path.join(tree, "etc/nsswitch.conf"), "passwd: files\ngroup: files\nhosts: files dns\n", 0o644);
  for (const d of ["proc", "sys", "dev", "run", "root"]) await mkdirMode(path.join(tree, d), d === "root" ? 0o700 : 0o755);
  await mkdirMode(path.join(tree, "tmp"), 0o1777);
  await mkdirMode(path.join(tree, "home/nonroot"), 0o700, NONROOT);
  if (spec.packages.includes("ca-certificates")) {
    const certs = path.join(root, "usr/share/ca-certificates/mozilla");
    const pems = (await readdir(certs)).filter((f) => f.endsWith(".crt")).sort();
    const bundle = Buffer.concat(await Promise.all(pems.map((f) => readFile(path.join(certs, f)))));
    await writeFileMode(path.join(tree, "etc/ssl/certs/ca-certificates.crt"), bundle, 0o644);
  }
  if (spec.node) {
    await mkdirMode(path.join(tree, "nodejs/bin"), 0o755);
    await copyFile(node, path.join(tree, "nodejs/bin/node"));
    await chmod(path.join(tree, "nodejs/bin/node"), 0o755);
  }
  if (spec.shell) {
    const { stdout } = await run(path.join(root, "bin/busybox"), ["--list-full"]);
    for (const applet of stdout.split("\n").filter(Boolean).sort()) {
      if (existsSync(path.join(root, applet))) continue;
      await mkdir(path.join(tree, path.dirname(applet)), { recursive: true });
      await symlink("/bin/busybox", path.join(tree, applet));
    }
  }
  if (spec.npm) {
    if (!npm) throw new Error(`the ${base} base needs npm's package`);
    const lib = path.join(tree, "usr/local/lib/node_modules");
    await mkdirMode(lib, 0o755);
    await run("tar", ["--extract", "--gzip", "--no-same-owner", `--file=${npm}`, `--directory=${lib}`]);
    await rename(path.join(lib, "package"), path.join(lib, "npm"));
    await normalise(path.join(lib, "npm"));
    const bin = path.join(tree, "usr/local/bin");
    await mkdirMode(bin, 0o755);
    await symlink("/nodejs/bin/node", path.join(bin, "node"));
    for (const [cmd, file] of [
      ["npm", "npm-cli.js"],
      ["npx", "npx-cli.js"],
    ] as const) {
      await chmod(path.join(lib, "npm/bin", file), 0o755);
      await symlink(`../lib/node_modules/npm/bin/${file}`, path.join(bin, cmd));
    }
  }
}

/** What the system layer of a base holds besides users, for its history. */
function systemParts(base: Base): string {
  const spec: BaseSpec = bases[base];
  return [spec.packages.includes("ca-certificates") && "CA bundle", "mount points", spec.node && "Node", spec.shell && "busybox applets", spec.npm && "npm"]
    .filter(Boolean)
    .join(", ");
}

/** npm's package from the npm registry (`npm pack` checks its integrity), cached beside the bases. */
async function npmPackage(dir: string, log: (line: string) => void): Promise<string> {
  const out = path.join(dir, ".bases", `npm-${NPM_VERSION}.tgz`);
  if (existsSync(out)) return out;
  await mkdir(path.dirname(out), { recursive: true });
  log(`Fetching npm ${NPM_VERSION} from the npm registry.`);
  const tmp = await mkdtemp(path.join(path.dirname(out), ".npm-"));
  try {
    await run("npm", ["pack", "--silent", `npm@${NPM_VERSION}`, `--pack-destination=${tmp}`]);
    await rename(path.join(tmp, `npm-${NPM_VERSION}.tgz`), out);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return out;
}

/** The function's own layer: its bundle and chunks under /app (and restic for the worker). */
async function appTree(tree: string, fn: FunctionName, restic: string): Promise<void> {
  await mkdirMode(path.join(tree, "app"), 0o755);
  // Bundled at a fixed place in the checkout, one level below its root as the Dockerfile's dist/ is: the source
  // maps name the sources relative to it, so the same sources give the same bytes wherever the checkout or the
  // image directory is, and the same as the Dockerfile's build stage gives.
  const staging = path.join(repoRoot, `.bundle-${fn}-${process.pid}`); // one per build: concurrent builds stay apart
  await rm(staging, { recursive: true, force: true });
  await bundleFunction(fn, path.join(staging, `${fn}.mjs`));
  await copyFile(path.join(staging, `${fn}.mjs`), path.join(tree, "app", `${fn}.mjs`));
  await cp(path.join(staging, `${fn}-chunks`), path.join(tree, "app", `${fn}-chunks`), { recursive: true }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "ENOENT") throw e;
  });
  await rm(staging, { recursive: true, force: true });
  await normalise(path.join(tree, "app"));
  if (fn === "worker") {
    await mkdirMode(path.join(tree, "usr/bin"), 0o755);
    await copyFile(restic, path.join(tree, "usr/bin/restic"));
    await chmod(path.join(tree, "usr/bin/restic"), 0o755);
  }
}

/** Root-owned, world-readable: directories 0755, files 0644. */
async function normalise(dir: string, owner = 0): Promise<void> {
  await mkdirMode(dir, 0o755, owner);
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const p = path.join(e.parentPath, e.name);
    await chmod(p, e.isDirectory() ? 0o755 : 0o644);
    await chown(p, owner, owner);
  }
}

/**
 * Node's compile cache for a function (scripts/bundle.ts), filled by the image's own Node inside the image's root
 * filesystem, as the image's user, so its entries name the paths the container will read.
 */
async function compileCacheTree(tree: string, fn: FunctionName, layers: readonly string[], scratch: string): Promise<void> {
  const root = path.join(scratch, "rootfs");
  await mkdir(root, { recursive: true });
  for (const layer of layers) await run("tar", ["--extract", "--same-owner", "--preserve-permissions", `--file=${layer}`, `--directory=${root}`]);
  const cache = path.join(root, "app", COMPILE_CACHE_DIR);
  await mkdirMode(cache, 0o755, NONROOT);
  await run("chroot", [`--userspec=${USER}`, root, NODE, ...nodeFlags[fn], "--input-type=module", "-e", `await import('/app/${fn}.mjs')`], {
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", NODE_COMPILE_CACHE: `/app/${COMPILE_CACHE_DIR}` },
  });
  await mkdirMode(path.join(tree, "app"), 0o755);
  await cp(cache, path.join(tree, "app", COMPILE_CACHE_DIR), { recursive: true });
  await normalise(path.join(tree, "app", COMPILE_CACHE_DIR), NONROOT);
}

async function umoci(...args: string[]): Promise<void> {
  await run("umoci", args, { maxBuffer: 16 * 1024 * 1024 });
}

/** An OCI image layout at `layout` tagged `tag`, from layer tars in order, with `config`. */
async function assemble(layout: string, tag: string, layers: readonly { file: string; by: string }[], config: ImageConfig): Promise<string> {
  const image = `${layout}:${tag}`;
  await umoci("init", "--layout", layout);
  await umoci("new", "--image", image);
  for (const l of layers) await umoci("raw", "add-layer", "--image", image, "--history.created", CREATED, "--history.created_by", l.by, l.file);
  const flags: string[] = ["--created", CREATED, "--architecture", "amd64", "--os", "linux", "--no-history"];
  if (config.User) flags.push("--config.user", config.User);
  for (const e of config.Entrypoint ?? []) flags.push("--config.entrypoint", e);
  for (const c of config.Cmd ?? []) flags.push("--config.cmd", c);
  for (const e of config.Env) flags.push("--config.env", e);
  if (config.WorkingDir) flags.push("--config.workingdir", config.WorkingDir);
  for (const p of Object.keys(config.ExposedPorts ?? {})) flags.push("--config.exposedports", p);
  await umoci("config", "--image", image, ...flags);
  await umoci("gc", "--layout", layout);
  const index = JSON.parse(await readFile(path.join(layout, "index.json"), "utf8")) as { manifests: { digest: string }[] };
  const digest = index.manifests[0]?.digest;
  if (!digest) throw new Error(`umoci left no manifest in ${layout}`);
  return digest;
}

/** What goes into an image, hashed: the recipe itself, the base packages, the binaries and the bundles' sources. */
async function inputsKey(name: string, spec: ImageSpec, opts: Required<Pick<BuildOptions, "restic" | "node" | "tag">>): Promise<string> {
  const h = createHash("sha256");
  h.update(
    JSON.stringify({ name, spec, tag: opts.tag, base: bases[spec.base], npm: "npm" in bases[spec.base] ? NPM_VERSION : undefined, epoch: SOURCE_DATE_EPOCH }),
  );
  h.update(await readFile(new URL(import.meta.url)));
  if ("node" in bases[spec.base]) h.update(await sha256File(opts.node));
  if (spec.fn === "worker") h.update(await sha256File(opts.restic));
  if (spec.fn) {
    for (const dir of ["lib", "functions", "scripts"]) {
      for (const e of (await readdir(path.join(repoRoot, dir), { withFileTypes: true, recursive: true })).sort((a, b) =>
        path.join(a.parentPath, a.name).localeCompare(path.join(b.parentPath, b.name)),
      )) {
        if (e.isFile() && /\.(ts|json)$/.test(e.name)) h.update(await readFile(path.join(e.parentPath, e.name)));
      }
    }
    h.update(await readFile(path.join(repoRoot, "package-lock.json")));
  }
  return h.digest("hex");
}

/** Builds every image (or only `only`) into `opts.dir`; an image whose inputs have not changed is kept as it is. */
export async function buildImages(opts: BuildOptions, only: readonly ImageName[] = Object.keys(images) as ImageName[]): Promise<Record<ImageName, BuiltImage>> {
  return build(images, opts, only);
}

/** Builds the Dockerfile's stand-in bases (standIns) into `opts.dir`, as buildImages does. */
export async function buildStandIns(opts: BuildOptions): Promise<Record<StandInName, BuiltImage>> {
  return build(standIns, opts, Object.keys(standIns) as StandInName[]);
}

async function build<N extends string>(specs: Readonly<Record<N, ImageSpec>>, opts: BuildOptions, only: readonly N[]): Promise<Record<N, BuiltImage>> {
  const log = opts.log ?? (() => {});
  const full = { restic: opts.restic, node: opts.node ?? process.execPath, tag: opts.tag ?? (await packageVersion()) };
  await mkdir(opts.dir, { recursive: true });
  const built = {} as Record<N, BuiltImage>;
  for (const name of only) {
    const spec = specs[name];
    if (spec.fn && !existsSync(functionEntry(spec.fn))) throw new Error(`image ${name}: no entry ${path.relative(repoRoot, functionEntry(spec.fn))}`);
    const layout = path.join(opts.dir, name);
    const keyFile = path.join(opts.dir, `.${name}.inputs`);
    const key = await inputsKey(name, spec, full);
    const digestFile = path.join(layout, "index.json");
    if (existsSync(digestFile) && existsSync(keyFile) && (await readFile(keyFile, "utf8")) === key) {
      const index = JSON.parse(await readFile(digestFile, "utf8")) as { manifests: { digest: string }[] };
      built[name] = { layout, tag: full.tag, digest: index.manifests[0]?.digest ?? "" };
      continue;
    }
    log(`Building image ${name}:${full.tag}.`);
    const scratch = await mkdtemp(path.join(opts.dir, `.build-${name}-`));
    try {
      const base = await baseLayer(opts.dir, spec.base, log);
      const root = path.join(scratch, "base");
      await mkdir(root);
      await run("tar", ["--extract", `--file=${base}`, `--directory=${root}`]);
      const system = path.join(scratch, "system");
      await mkdir(system);
      await systemTree(system, spec.base, root, full.node, "npm" in bases[spec.base] ? await npmPackage(opts.dir, log) : undefined);
      const layers = [
        { file: base, by: `mmdebstrap --variant=extract --include=${bases[spec.base].packages.join(",")} ${DEBIAN_SUITE}` },
        { file: path.join(scratch, "system.tar"), by: `walle: users, ${systemParts(spec.base)}` },
      ];
      await tarTree(system, layers[1]!.file);
      if (spec.fn) {
        const app = path.join(scratch, "app");
        await appTree(app, spec.fn, full.restic);
        layers.push({ file: path.join(scratch, "app.tar"), by: `walle: the ${spec.fn} bundle${spec.fn === "worker" ? " and restic" : ""}` });
        await tarTree(app, layers[2]!.file);
        if (spec.config.Env.some((e) => e.startsWith("NODE_COMPILE_CACHE="))) {
          // V8's code cache is not byte-for-byte the same from one run to the next, so it is a layer of its own,
          // the last: every layer below it is reproducible.
          const cache = path.join(scratch, "cache");
          await compileCacheTree(
            cache,
            spec.fn,
            layers.map((l) => l.file),
            path.join(scratch, "cache-root"),
          );
          layers.push({ file: path.join(scratch, "cache.tar"), by: `walle: Node's compile cache of the ${spec.fn} bundle` });
          await tarTree(cache, layers[3]!.file);
        }
      }
      const tmpLayout = path.join(scratch, "layout");
      const digest = await assemble(tmpLayout, full.tag, layers, spec.config);
      await rm(layout, { recursive: true, force: true });
      await rename(tmpLayout, layout);
      await writeFile(keyFile, key);
      built[name] = { layout, tag: full.tag, digest };
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }
  return built;
}

/**
 * An image of one static Go binary of the local cluster's upstream programs (Knative Serving's, say), laid out as
 * ko lays out the images upstream publishes: the binary at /ko-app/<name> as the entrypoint, KO_DATA_PATH, and a
 * numeric non-root user (upstream's Deployments ask for runAsNonRoot). One layer, reproducible; kept while the
 * binary and this recipe are unchanged.
 */
/** The host's time zone database (Debian's tzdata, a required package). */
const ZONEINFO = "/usr/share/zoneinfo";

export async function buildBinaryImage(opts: {
  readonly dir: string;
  readonly name: string;
  readonly binary: string;
  readonly tag: string;
  readonly log?: (line: string) => void;
}): Promise<BuiltImage> {
  const layout = path.join(opts.dir, opts.name);
  const keyFile = path.join(opts.dir, `.${opts.name}.inputs`);
  const key = createHash("sha256")
    .update(JSON.stringify({ name: opts.name, tag: opts.tag, epoch: SOURCE_DATE_EPOCH }))
    .update(await readFile(new URL(import.meta.url)))
    .update(await sha256File(opts.binary))
    .digest("hex");
  const index = path.join(layout, "index.json");
  if (existsSync(index) && existsSync(keyFile) && (await readFile(keyFile, "utf8")) === key) {
    const manifests = (JSON.parse(await readFile(index, "utf8")) as { manifests: { digest: string }[] }).manifests;
    return { layout, tag: opts.tag, digest: manifests[0]?.digest ?? "" };
  }
  opts.log?.(`Building image ${opts.name}:${opts.tag}.`);
  await mkdir(opts.dir, { recursive: true });
  const scratch = await mkdtemp(path.join(opts.dir, `.build-${opts.name}-`));
  try {
    const tree = path.join(scratch, "tree");
    await writeFileMode(
      path.join(tree, "etc/passwd"),
      `root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:${NONROOT}:${NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n`,
      0o644,
    );
    await writeFileMode(path.join(tree, "etc/group"), `root:x:0:\nnonroot:x:${NONROOT}:\n`, 0o644);
    await mkdirMode(path.join(tree, "tmp"), 0o1777);
    // The time zone database, as the static base ko builds upstream's images on carries it: Eventing's webhook
    // resolves a PingSource's timezone with it, and refuses every one without it ("unknown time zone Etc/UTC").
    await cp(ZONEINFO, path.join(tree, "usr/share/zoneinfo"), { recursive: true, verbatimSymlinks: true });
    await mkdirMode(path.join(tree, "var/run/ko"), 0o755);
    await mkdirMode(path.join(tree, "ko-app"), 0o755);
    await copyFile(opts.binary, path.join(tree, "ko-app", opts.name));
    await chmod(path.join(tree, "ko-app", opts.name), 0o755);
    await tarTree(tree, path.join(scratch, "layer.tar"));
    const config = { User: USER, Entrypoint: [`/ko-app/${opts.name}`], Env: [PATH_ENV, "KO_DATA_PATH=/var/run/ko"] };
    const tmpLayout = path.join(scratch, "layout");
    const digest = await assemble(
      tmpLayout,
      opts.tag,
      [{ file: path.join(scratch, "layer.tar"), by: `walle: ${opts.name}, a static Go binary, as ko lays it out` }],
      config,
    );
    await rm(layout, { recursive: true, force: true });
    await rename(tmpLayout, layout);
    await writeFile(keyFile, key);
    return { layout, tag: opts.tag, digest };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

export async function packageVersion(): Promise<string> {
  return (JSON.parse(await readFile(path.join(repoRoot, "package.json"), "utf8")) as { version: string }).version;
}

// npm run images [-- <dir>]: builds the images into <dir> (default dist/images), for `skopeo copy`.
if (import.meta.main) {
  const { ensureDebianPackages, resolveBinary } = await import("../cluster/toolchain.ts");
  await ensureDebianPackages(console.log);
  const dir = path.resolve(process.argv[2] ?? path.join(repoRoot, "dist", "images"));
  const built = await buildImages({ dir, restic: await resolveBinary("restic", console.log), log: console.log });
  for (const [name, b] of Object.entries(built)) console.log(`${name}: oci:${b.layout}:${b.tag} ${b.digest}`);
}

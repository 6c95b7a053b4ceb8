// Reading Walle's OCI image layouts as a runtime does, and running them under runc from a runtime bundle that
// umoci unpacks: the image's own root filesystem, user, entrypoint, environment and working directory.
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import type { BuiltImage, ImageConfig } from "../../scripts/images.ts";

const run = promisify(execFile);

interface Descriptor {
  readonly digest: string;
}

async function blob<T>(layout: string, d: Descriptor): Promise<T> {
  return JSON.parse(await readFile(path.join(layout, "blobs", ...d.digest.split(":")), "utf8")) as T;
}

/** An image's manifest and config, read from its layout by the index's one tag. */
export async function imageConfig(image: BuiltImage): Promise<{ config: ImageConfig; created: string; layers: string[]; history: { created_by?: string }[] }> {
  const index = JSON.parse(await readFile(path.join(image.layout, "index.json"), "utf8")) as {
    manifests: (Descriptor & { annotations?: Record<string, string> })[];
  };
  const tagged = index.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === image.tag);
  if (!tagged) throw new Error(`${image.layout} has no tag ${image.tag}`);
  const manifest = await blob<{ config: Descriptor; layers: Descriptor[] }>(image.layout, tagged);
  const config = await blob<{ config: ImageConfig; created: string; history: { created_by?: string }[] }>(image.layout, manifest.config);
  return { config: config.config, created: config.created, layers: manifest.layers.map((l) => l.digest), history: config.history };
}

/** umoci's runtime bundle of an image: `<dir>/rootfs` and the runc config.json the image's config makes. */
export async function unpack(image: BuiltImage, dir: string): Promise<string> {
  await run("umoci", ["unpack", "--image", `${image.layout}:${image.tag}`, dir], { maxBuffer: 16 * 1024 * 1024 });
  return dir;
}

export interface BundleRun {
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Replaces the image's entrypoint and command. */
  readonly args?: readonly string[];
  /** Appended to the image's command, as a pod's `args`. */
  readonly extraArgs?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly mounts?: readonly { source: string; destination: string; readOnly?: boolean }[];
  /** A line of stdout or stderr that, once seen, stops the container (SIGKILL). */
  readonly until?: RegExp;
}

/**
 * Runs a bundle under runc with a read-only root filesystem, no new privileges and its own namespaces (runc's
 * defaults from umoci: pid, network, ipc, uts, mount), and returns its exit and output.
 */
export async function runBundle(bundle: string, o: RunOptions = {}): Promise<BundleRun> {
  const configFile = path.join(bundle, "config.json");
  const spec = JSON.parse(await readFile(configFile, "utf8")) as {
    process: { args: string[]; env: string[]; terminal: boolean; noNewPrivileges?: boolean };
    root: { path: string; readonly: boolean };
    mounts: { destination: string; type: string; source: string; options: string[] }[];
  };
  if (o.args) spec.process.args = [...o.args];
  if (o.extraArgs) spec.process.args.push(...o.extraArgs);
  spec.process.env = [
    ...spec.process.env.filter((e) => !Object.keys(o.env ?? {}).includes(e.split("=")[0] ?? "")),
    ...Object.entries(o.env ?? {}).map(([k, v]) => `${k}=${v}`),
  ];
  spec.process.terminal = false;
  spec.process.noNewPrivileges = true;
  spec.root.readonly = true;
  for (const m of o.mounts ?? [])
    spec.mounts.push({ destination: m.destination, type: "bind", source: m.source, options: ["rbind", m.readOnly ? "ro" : "rw"] });
  spec.mounts.push({ destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777"] });
  await writeFile(configFile, JSON.stringify(spec));
  const state = path.join(path.dirname(bundle), "runc-state");
  await mkdir(state, { recursive: true });
  const id = `walle-test-${randomBytes(4).toString("hex")}`;
  const child = spawn("runc", ["--root", state, "run", "--bundle", bundle, id], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  const watch = (chunk: Buffer, into: "out" | "err") => {
    if (into === "out") stdout += chunk.toString();
    else stderr += chunk.toString();
    if (o.until && o.until.test(stdout + stderr)) void run("runc", ["--root", state, "kill", id, "KILL"]).catch(() => {});
  };
  child.stdout.on("data", (c: Buffer) => watch(c, "out"));
  child.stderr.on("data", (c: Buffer) => watch(c, "err"));
  const exitCode = await new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  await run("runc", ["--root", state, "delete", "--force", id]).catch(() => {});
  await rm(state, { recursive: true, force: true });
  return { exitCode, stdout, stderr };
}

// kubectl walle installed the two ways the README gives: `npm install -g` from this checkout, and krew's archive
// with its manifest (npm run krew). Each is run as kubectl would run it: kubectl-walle from the PATH.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { access, constants, mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { repoRoot } from "../../cluster/toolchain.ts";
import { buildKrew } from "../../scripts/krew.ts";
import { tempDir } from "./worker-harness.ts";

const run = promisify(execFile);
const pinnedNode = path.dirname(process.execPath);
const version = (JSON.parse(await readFile(path.join(repoRoot, "package.json"), "utf8")) as { version: string }).version;

/** kubectl-walle from `PATH`, with its exit code and output. */
async function plugin(args: string[], PATH: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run("kubectl-walle", args, { env: { PATH, HOME: "/nonexistent" } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

describe("installing kubectl walle", () => {
  it("npm install -g from the checkout puts kubectl-walle on the PATH, which runs with Debian's Node 20 first there", async () => {
    const prefix = await tempDir("npm-global");
    await run("npm", ["install", "-g", repoRoot, "--prefix", prefix, "--no-audit", "--no-fund"], { env: { ...process.env, npm_config_loglevel: "error" } });
    const PATH = `${path.join(prefix, "bin")}:/usr/bin:/bin`;
    expect((await run("node", ["--version"], { env: { PATH } })).stdout).toMatch(/^v20\./);
    const help = await plugin(["--help"], PATH);
    expect(help).toMatchObject({ code: 0, stderr: "" });
    expect(help.stdout).toMatch(/^kubectl walle: back up and restore PersistentVolumeClaims with Walle, as yourself\.\n/);
    const wrong = await plugin(["restore", "data", "--repository", "repo"], PATH);
    expect(wrong).toMatchObject({
      code: 2,
      stderr: "error: restore needs exactly one of --to <new-pvc> and --in-place\nSee 'kubectl walle restore --help'.\n",
    });
  }, 120_000);

  it("npm run krew makes a reproducible archive, and a manifest whose sha256 is the archive's, that runs on Node 22.15 and later", async () => {
    const first = await buildKrew(version);
    const sha = createHash("sha256")
      .update(await readFile(first.archive))
      .digest("hex");
    expect(first.sha256).toBe(sha);
    const manifest = parse(await readFile(first.manifest, "utf8")) as {
      apiVersion: string;
      kind: string;
      metadata: { name: string };
      spec: { version: string; platforms: { selector: unknown; uri: string; sha256: string; bin: string }[] };
    };
    expect(manifest).toMatchObject({
      apiVersion: "krew.googlecontainertools.github.com/v1alpha2",
      kind: "Plugin",
      metadata: { name: "walle" },
      spec: { version: `v${version}` },
    });
    expect(manifest.spec.platforms.map((p) => p.selector)).toEqual([
      { matchLabels: { os: "linux", arch: "amd64" } },
      { matchLabels: { os: "linux", arch: "arm64" } },
      { matchLabels: { os: "darwin", arch: "amd64" } },
      { matchLabels: { os: "darwin", arch: "arm64" } },
    ]);
    for (const p of manifest.spec.platforms)
      expect(p).toEqual({
        selector: p.selector,
        uri: `https://github.com/ros-io/walle/releases/download/v${version}/kubectl-walle.tar.gz`,
        sha256: sha,
        bin: "kubectl-walle",
      });
    // What krew does: unpack the archive and link its bin.
    const home = path.join(await tempDir("krew"), "walle");
    await mkdir(home);
    await run("tar", ["-xzf", first.archive, "-C", home]);
    await access(path.join(home, "kubectl-walle"), constants.X_OK);
    const help = await plugin(["--help"], `${home}:${pinnedNode}:/usr/bin:/bin`);
    expect(help).toMatchObject({ code: 0, stderr: "" });
    expect(help.stdout).toContain("Run 'kubectl walle <command> --help' for a command's flags and examples.");
    // The same archive with Debian's Node 20 first on the PATH says what it needs.
    const old = await plugin(["--help"], `${home}:/usr/bin:/bin`);
    expect(old).toMatchObject({ code: 1, stdout: "" });
    expect(old.stderr).toMatch(/^error: kubectl walle needs Node\.js 22\.15 or later on the PATH, and this is v20\.\d+\.\d+\n$/);
    // Built again from the same sources: byte for byte the same archive.
    expect((await buildKrew(version)).sha256).toBe(sha);
  }, 180_000);
});

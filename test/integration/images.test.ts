// Walle's images are what docs/development.md (Images) and the Dockerfile say: each image's config, its file tree,
// each function starting from its own image under runc, and the same digest from a second build.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { lstat, mkdir, readFile, readlink, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { localImages } from "../../cluster/images.ts";
import { repoRoot } from "../../cluster/toolchain.ts";
import { NONROOT } from "../../lib/core/privileges.ts";
import { buildImages, type BuiltImage, type ImageName } from "../../scripts/images.ts";
import { imageConfig, runBundle, unpack } from "../support/oci.ts";
import { tempDir } from "./worker-harness.ts";

const run = promisify(execFile);
const functions = ["reconcile", "tick", "worker"] as const;

let built: Record<ImageName, BuiltImage>;
let dir: string;
const rootfs = (name: ImageName) => path.join(dir, name, "rootfs");

beforeAll(async () => {
  built = await localImages();
  dir = await tempDir("images");
  for (const name of Object.keys(built) as ImageName[]) await unpack(built[name], path.join(dir, name));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** What the Dockerfile's `FROM … AS <target>` stage declares: entrypoint, command, user, env, workdir, copies. */
async function dockerfileStage(target: string) {
  const text = (await readFile(path.join(repoRoot, "Dockerfile"), "utf8")).replace(/\\\n\s*/g, " ");
  const stages = text.split(/^FROM /m);
  const stage = stages.find((s) => new RegExp(`^\\S+ AS ${target}\\s*$`, "m").test(s.split("\n")[0] ?? ""));
  if (!stage) throw new Error(`the Dockerfile has no stage ${target}`);
  const lines = stage.split("\n").map((l) => l.trim());
  const value = (op: string) => lines.find((l) => l.startsWith(`${op} `))?.slice(op.length + 1);
  const json = (op: string) => (value(op) ? (JSON.parse(value(op) ?? "[]") as string[]) : undefined);
  const env = (
    lines
      .filter((l) => l.startsWith("ENV "))
      .join(" ")
      .match(/\w+=\S+/g) ?? []
  ).sort();
  const copies = lines.filter((l) => l.startsWith("COPY ")).map((l) => l.split(/\s+/).at(-1) ?? "");
  return { entrypoint: json("ENTRYPOINT"), cmd: json("CMD"), user: value("USER"), workdir: value("WORKDIR"), expose: value("EXPOSE"), env, copies };
}

describe("Walle's images", () => {
  it.each(functions)("walle-%s has the config of the Dockerfile's stage, on Node 24 as user 65532", async (fn) => {
    const { config, created, history } = await imageConfig(built[`walle-${fn}`]);
    const stage = await dockerfileStage(fn);
    expect(config.User).toBe(`${NONROOT}:${NONROOT}`);
    expect(config.User).toBe(stage.user);
    expect(config.Entrypoint).toEqual(stage.entrypoint);
    expect(config.Cmd).toEqual(stage.cmd);
    expect(config.WorkingDir).toBe(stage.workdir);
    expect(config.Env.filter((e) => !e.startsWith("PATH=")).sort()).toEqual(stage.env);
    expect(Object.keys(config.ExposedPorts ?? {})).toEqual(stage.expose ? [`${stage.expose}/tcp`] : []);
    expect(created).toBe("2025-12-01T00:00:00Z");
    const layers = [
      expect.stringMatching(/^mmdebstrap --variant=extract /),
      expect.stringMatching(/Node$/),
      expect.stringMatching(new RegExp(`the ${fn} bundle`)),
    ];
    expect(history.map((h) => h.created_by)).toEqual(fn === "worker" ? layers : [...layers, expect.stringMatching(/compile cache/)]);
    for (const copied of stage.copies) expect(existsSync(path.join(rootfs(`walle-${fn}`), copied)), copied).toBe(true);
  });

  it.each(functions)("walle-%s holds Node 24, its bundle, no shell and no package manager", async (fn) => {
    const root = rootfs(`walle-${fn}`);
    const node = await stat(path.join(root, "nodejs/bin/node"));
    expect({ uid: node.uid, mode: node.mode & 0o7777 }).toEqual({ uid: 0, mode: 0o755 });
    const { stdout } = await run("chroot", [`--userspec=${NONROOT}:${NONROOT}`, root, "/nodejs/bin/node", "-p", "process.versions.node"]);
    expect(stdout.trim()).toMatch(/^24\./);
    expect((await stat(path.join(root, `app/${fn}.mjs`))).mode & 0o7777).toBe(0o644);
    for (const absent of ["bin/sh", "bin/bash", "usr/bin/apt", "usr/bin/dpkg", "bin/busybox"]) expect(existsSync(path.join(root, absent)), absent).toBe(false);
    expect(existsSync(path.join(root, "usr/bin/restic"))).toBe(fn === "worker");
    expect(await readFile(path.join(root, "etc/passwd"), "utf8")).toContain(`nonroot:x:${NONROOT}:${NONROOT}:`);
    const home = await stat(path.join(root, "home/nonroot"));
    expect({ uid: home.uid, mode: home.mode & 0o7777 }).toEqual({ uid: NONROOT, mode: 0o700 });
    expect((await stat(path.join(root, "tmp"))).mode & 0o7777).toBe(0o1777);
    expect(await readFile(path.join(root, "etc/ssl/certs/ca-certificates.crt"), "utf8")).toMatch(/^-----BEGIN CERTIFICATE-----/);
    if (fn !== "worker") {
      const cache = await stat(path.join(root, "app/.node-compile-cache"));
      expect(cache.uid).toBe(NONROOT);
    }
  });

  it("walle-shell is a busybox shell, as alpine's; walle-pause only waits", async () => {
    expect((await imageConfig(built["walle-shell"])).config).toMatchObject({ Cmd: ["sh"] });
    expect((await imageConfig(built["walle-shell"])).config.User).toBeUndefined();
    expect(await readlink(path.join(rootfs("walle-shell"), "bin/sh"))).toBe("/bin/busybox");
    expect((await lstat(path.join(rootfs("walle-shell"), "bin/date"))).isSymbolicLink()).toBe(true);
    const shell = await runBundle(path.join(dir, "walle-shell"), { extraArgs: ["-c", "id -u; date -u +%Y; touch /etc/x 2>&1 || echo read-only"] });
    expect(shell.stdout.split("\n").slice(0, 3)).toEqual(["0", String(new Date().getUTCFullYear()), expect.stringMatching(/Read-only file system/)]);
    const pause = await imageConfig(built["walle-pause"]);
    expect(pause.config.Entrypoint).toEqual(["/bin/busybox", "sleep", "infinity"]);
  });

  it("starts the reconcile function from its image, serving on :8080, configured by the operator's file as the Helm chart does", async () => {
    const kubeconfig = path.join(dir, "kubeconfig");
    await writeFile(
      kubeconfig,
      "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    );
    // The bundle loads the YAML parser only for this file, from a split chunk: its exports must be found there too.
    const config = path.join(dir, "config.yml");
    await writeFile(config, "backup_job_image: walle-worker:0.1.0\ncluster_name: test\nsnap_class_mappings: []\n");
    const started = await runBundle(path.join(dir, "walle-reconcile"), {
      env: { KUBECONFIG: "/config/kubeconfig", WALLE_CONFIG: "/etc/walle/config.yml" },
      mounts: [
        { source: kubeconfig, destination: "/config/kubeconfig", readOnly: true },
        { source: config, destination: "/etc/walle/config.yml", readOnly: true },
      ],
      until: /Started reconcile function/,
    });
    const line = started.stdout.split("\n").find((l) => l.includes("Started reconcile function"));
    expect(line, started.stdout + started.stderr).toBeDefined();
    expect(JSON.parse(line ?? "{}")).toMatchObject({ function: "walle-reconcile", port: 8080 });
  });

  it("starts the tick function from its image, refusing bad arguments as documented", async () => {
    const refused = await runBundle(path.join(dir, "walle-tick"), { extraArgs: ["--now", "yesterday"] });
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain('--now "yesterday" is not an RFC 3339 time');
  });

  it("backs up a read-only mounted tree from the worker image into a repository, as user 65532", async () => {
    const source = path.join(dir, "source");
    const repo = path.join(dir, "repo");
    const term = path.join(dir, "term");
    await mkdir(path.join(source, "docs"), { recursive: true });
    await writeFile(path.join(source, "docs/readme.md"), "# from the worker image\n");
    await mkdir(repo);
    await mkdir(term);
    await run("chown", [`${NONROOT}:${NONROOT}`, repo, term]);
    const backup = await runBundle(path.join(dir, "walle-worker"), {
      env: {
        SECRET_RESTIC_REPOSITORY: "/repo",
        SECRET_RESTIC_PASSWORD: "pw",
        INITIALIZE_REPO: "true",
        SOURCE_PATH: "/data",
        PVC_NAME: "data",
        PVC_NAMESPACE: "shop",
        CLUSTER_NAME: "test",
        TERMINATION_MESSAGE_PATH: "/term/message",
        RESTIC_CACHE_DIR: "/tmp/cache",
      },
      mounts: [
        { source, destination: "/data", readOnly: true },
        { source: repo, destination: "/repo" },
        { source: term, destination: "/term" },
      ],
    });
    expect(backup.exitCode, backup.stdout + backup.stderr).toBe(0);
    const message = JSON.parse(await readFile(path.join(term, "message"), "utf8")) as Record<string, unknown>;
    expect(JSON.stringify(message)).toMatch(/"snapshotId":"[0-9a-f]{64}"/);
    expect((await stat(path.join(repo, "config"))).uid).toBe(NONROOT);
  });

  it("builds the same images again from a fresh Debian extract: the same digests, but for the compile cache", async () => {
    const again = await tempDir("images-again");
    try {
      const second = await buildImages({ dir: again, restic: inject("restic"), tag: built["walle-worker"].tag }, ["walle-worker", "walle-tick", "walle-shell"]);
      expect(second["walle-worker"].digest).toBe(built["walle-worker"].digest);
      expect(second["walle-shell"].digest).toBe(built["walle-shell"].digest);
      const [first, next] = [await imageConfig(built["walle-tick"]), await imageConfig(second["walle-tick"])];
      expect(next.layers.slice(0, 3)).toEqual(first.layers.slice(0, 3));
      expect(next.layers).toHaveLength(4);
    } finally {
      await rm(again, { recursive: true, force: true });
    }
  });
});

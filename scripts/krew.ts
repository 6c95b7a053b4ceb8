// npm run krew: kubectl walle as a krew plugin. Writes dist/krew/kubectl-walle.tar.gz (the plugin bundled into
// JavaScript for Node 22.15 and later, and its executable) and dist/krew/walle.yaml, krew's plugin manifest for it,
// whose sha256 is the archive's; a release uploads the archive where the manifest's uri says, and the manifest
// goes to a krew index. The archive is reproducible: sorted entries, owner 0, mtime 0, gzip without a name or time.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { repoRoot } from "../cluster/toolchain.ts";
import { bundleEntry } from "./bundle.ts";
import { packageVersion } from "./images.ts";

const run = promisify(execFile);

export const KREW_DIR = path.join(repoRoot, "dist", "krew");
const RELEASES = "https://github.com/ros-io/walle/releases/download";

/**
 * The executable krew links as kubectl-walle: Node from the PATH, running the bundle beside it. client-node's HTTP
 * stack uses zlib's zstd, which Node has from 22.15 on; an older Node is told so instead of failing mid-request.
 */
export const MIN_NODE = "22.15";
const LAUNCHER = `#!/usr/bin/env node
// kubectl walle (https://github.com/ros-io/walle), run by kubectl as the plugin kubectl-walle.
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 15)) {
  process.stderr.write(\`error: kubectl walle needs Node.js ${MIN_NODE} or later on the PATH, and this is \${process.version}\\n\`);
  process.exit(1);
}
await import("./kubectl-walle.mjs");
`;

export interface KrewBuild {
  readonly archive: string;
  readonly manifest: string;
  readonly sha256: string;
}

export async function buildKrew(version: string): Promise<KrewBuild> {
  const tree = path.join(KREW_DIR, "kubectl-walle");
  await rm(KREW_DIR, { recursive: true, force: true });
  await mkdir(tree, { recursive: true });
  await bundleEntry(path.join(repoRoot, "cli", "kubectl-walle.ts"), path.join(tree, "kubectl-walle.mjs"), "node22");
  await writeFile(path.join(tree, "kubectl-walle"), LAUNCHER);
  await chmod(path.join(tree, "kubectl-walle"), 0o755);
  // The bundle is an ES module whatever package.json krew's directory may inherit.
  await writeFile(path.join(tree, "package.json"), `${JSON.stringify({ type: "module" })}\n`);
  // The checkout has no LICENSE file; package.json names the licence.
  const { license } = JSON.parse(await readFile(path.join(repoRoot, "package.json"), "utf8")) as { license: string };
  await writeFile(path.join(tree, "LICENSE"), `${license}\n`);
  const tar = path.join(KREW_DIR, "kubectl-walle.tar");
  await run("tar", ["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-cf", tar, "-C", tree, "."]);
  await run("gzip", ["-n", "-9", "-f", tar]);
  const archive = `${tar}.gz`;
  const sha256 = createHash("sha256")
    .update(await readFile(archive))
    .digest("hex");
  const manifest = path.join(KREW_DIR, "walle.yaml");
  await writeFile(manifest, stringify(krewManifest(version, sha256)));
  return { archive, manifest, sha256 };
}

/** krew's Plugin manifest (apiVersion krew.googlecontainertools.github.com/v1alpha2) for the archive. */
export function krewManifest(version: string, sha256: string): Record<string, unknown> {
  return {
    apiVersion: "krew.googlecontainertools.github.com/v1alpha2",
    kind: "Plugin",
    metadata: { name: "walle" },
    spec: {
      version: `v${version}`,
      homepage: "https://github.com/ros-io/walle",
      shortDescription: "Back up and restore PVCs with Walle",
      description:
        "kubectl walle backs up a PersistentVolumeClaim now, restores one into a new PVC or in place, and shows\n" +
        "Walle's schedules, running BackupSets and failed BackupJobs, as you: your kubeconfig and your RBAC.\n",
      caveats: `Needs Node.js ${MIN_NODE} or later on the PATH, and Walle installed in the cluster (see the homepage).\n`,
      platforms: ["linux", "darwin"].flatMap((os) =>
        ["amd64", "arm64"].map((arch) => ({
          selector: { matchLabels: { os, arch } },
          uri: `${RELEASES}/v${version}/kubectl-walle.tar.gz`,
          sha256,
          bin: "kubectl-walle",
        })),
      ),
    },
  };
}

if (import.meta.main) {
  const built = await buildKrew(await packageVersion());
  console.log(`${path.relative(repoRoot, built.archive)} (sha256 ${built.sha256})\n${path.relative(repoRoot, built.manifest)}`);
}

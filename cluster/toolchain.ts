// The local toolchain: the binaries Walle's local cluster and tests need, found or built once.
//
// Order of resolution for each binary, the same as envtest's:
//   1. TEST_ASSET_<NAME> (e.g. TEST_ASSET_KUBE_APISERVER) names the binary itself;
//   2. KUBEBUILDER_ASSETS names a directory that holds it;
//   3. the build cache, ~/.cache/walle/bin/<name>-<version>-<hash of the tools module>/ (WALLE_CACHE_DIR moves it);
//   4. a build from the Go tools module under toolchain/, pinned by its go.mod, when Go is on the PATH.
// Without any of them, resolution fails and names exactly what is missing.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { access, constants, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile, copyFile } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const toolchainDir = path.join(repoRoot, "toolchain");

export function cacheDir(): string {
  const base = process.env.WALLE_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), ".cache"), "walle");
  return base;
}

/** A Go module that builds some of the binaries, and the version flags for them. */
interface ToolModule {
  readonly dir: string;
  /** The module whose version names the build, as required in the tools module's go.mod. */
  readonly versionOf: string;
  readonly packages: Readonly<Record<string, string>>;
  ldflags(version: string): string;
  /** Build environment beyond the caller's, e.g. CGO_ENABLED=0 where upstream builds without cgo. */
  readonly env?: Readonly<Record<string, string>>;
}

const kubeVersionFlags = (version: string): string => {
  const [, major = "1", minor = "0"] = /^v(\d+)\.(\d+)/.exec(version) ?? [];
  const vars = (pkg: string) =>
    [`${pkg}.gitVersion=${version}`, `${pkg}.gitMajor=${major}`, `${pkg}.gitMinor=${minor}`, `${pkg}.gitTreeState=clean`].map((v) => `-X ${v}`).join(" ");
  return `-s -w ${vars("k8s.io/component-base/version")} ${vars("k8s.io/client-go/pkg/version")}`;
};

const modules = {
  kube: {
    dir: "kube",
    versionOf: "k8s.io/kubernetes",
    packages: {
      "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
      "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    },
    ldflags: kubeVersionFlags,
  },
  // The real node's kubelet, and the scheduler that places pods on it, at the control plane's version.
  node: {
    dir: "node",
    versionOf: "k8s.io/kubernetes",
    packages: {
      kubelet: "k8s.io/kubernetes/cmd/kubelet",
      "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
      "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
    },
    ldflags: kubeVersionFlags,
  },
  // The registry the real node pulls Walle's images (and the stand-ins for other images) from.
  registry: {
    dir: "registry",
    versionOf: "github.com/distribution/distribution/v3",
    packages: { registry: "github.com/distribution/distribution/v3/cmd/registry" },
    ldflags: (version: string) => `-s -w -X github.com/distribution/distribution/v3/version.version=${version}`,
    env: { CGO_ENABLED: "0" },
  },
  etcd: {
    dir: "etcd",
    versionOf: "go.etcd.io/etcd/server/v3",
    packages: { etcd: "go.etcd.io/etcd/server/v3" },
    ldflags: () => "-s -w",
  },
  restic: {
    dir: "restic",
    versionOf: "github.com/restic/restic",
    packages: {
      restic: "github.com/restic/restic/cmd/restic",
      "rest-server": "github.com/restic/rest-server/cmd/rest-server",
    },
    ldflags: () => "-s -w",
  },
  keda: {
    dir: "keda",
    versionOf: "github.com/kedacore/keda/v2",
    packages: { "keda-operator": "github.com/kedacore/keda/v2/cmd/operator" },
    ldflags: (version: string) => `-s -w -X github.com/kedacore/keda/v2/version.Version=${version}`,
    // As upstream's Makefile builds it.
    env: { CGO_ENABLED: "0" },
  },
  eventing: {
    dir: "eventing",
    versionOf: "knative.dev/eventing",
    packages: {
      apiserver_receive_adapter: "knative.dev/eventing/cmd/apiserver_receive_adapter",
      // Eventing's controller, webhook and PingSource adapter (cluster/knative-eventing.ts): what reconciles the
      // shipped ApiServerSource and PingSource into their adapters on a cluster with Knative Eventing.
      "eventing-controller": "knative.dev/eventing/cmd/controller",
      "eventing-webhook": "knative.dev/eventing/cmd/webhook",
      "eventing-mtping": "knative.dev/eventing/cmd/mtping",
    },
    ldflags: () => "-s -w",
    // Upstream ships it static, on distroless/static.
    env: { CGO_ENABLED: "0" },
  },
  // Knative Serving's control plane and queue-proxy (cluster/knative-serving.ts), at the release of the Eventing
  // adapter above, as ko builds them for upstream's release (static, CGO off).
  serving: {
    dir: "serving",
    versionOf: "knative.dev/serving",
    packages: {
      "knative-controller": "knative.dev/serving/cmd/controller",
      "knative-webhook": "knative.dev/serving/cmd/webhook",
      "knative-autoscaler": "knative.dev/serving/cmd/autoscaler",
      "knative-activator": "knative.dev/serving/cmd/activator",
      "knative-queue": "knative.dev/serving/cmd/queue",
    },
    ldflags: () => "-s -w",
    env: { CGO_ENABLED: "0" },
  },
  // The CSI sidecars, as csi-hostpath deploys them beside its driver. Each is built as its Makefile builds it
  // (release-tools: CGO_ENABLED=0, the version in main.version).
  snapshotter: {
    dir: "snapshotter",
    versionOf: "github.com/kubernetes-csi/external-snapshotter/v8",
    packages: {
      "snapshot-controller": "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller",
      "csi-snapshotter": "github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter",
    },
    ldflags: (version: string) => `-s -w -X main.version=${version}`,
    env: { CGO_ENABLED: "0" },
  },
  provisioner: {
    dir: "provisioner",
    versionOf: "github.com/kubernetes-csi/external-provisioner/v6",
    packages: { "csi-provisioner": "github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner" },
    ldflags: (version: string) => `-s -w -X main.version=${version}`,
    env: { CGO_ENABLED: "0" },
  },
  // The cluster's DNS (cluster/node.ts): CoreDNS with a cluster DNS's plugins linked in (toolchain/dns/main.go), as
  // upstream builds it (CGO off, its commit in coremain.GitCommit).
  dns: {
    dir: "dns",
    versionOf: "github.com/coredns/coredns",
    packages: { coredns: "walle.local/toolchain/dns" },
    ldflags: (version: string) => `-s -w -X github.com/coredns/coredns/coremain.GitCommit=${version}`,
    env: { CGO_ENABLED: "0" },
  },
  // helm, for the tests that install Walle's chart as the original's README does; as its Makefile builds it.
  helm: {
    dir: "helm",
    versionOf: "helm.sh/helm/v3",
    packages: { helm: "helm.sh/helm/v3/cmd/helm" },
    ldflags: (version: string) => `-s -w -X helm.sh/helm/v3/internal/version.version=${version} -X helm.sh/helm/v3/internal/version.gitTreeState=clean`,
    env: { CGO_ENABLED: "0" },
  },
  csiTest: {
    dir: "csi-test",
    versionOf: "github.com/kubernetes-csi/csi-test/v5",
    packages: { "csi-sanity": "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity" },
    ldflags: (version: string) => `-s -w -X main.VERSION=${version}`,
    env: { CGO_ENABLED: "0" },
  },
} as const satisfies Record<string, ToolModule>;

export type BinaryName =
  | "kube-apiserver"
  | "kube-controller-manager"
  | "kubelet"
  | "kube-scheduler"
  | "kube-proxy"
  | "registry"
  | "etcd"
  | "restic"
  | "rest-server"
  | "keda-operator"
  | "apiserver_receive_adapter"
  | "eventing-controller"
  | "eventing-webhook"
  | "eventing-mtping"
  | "snapshot-controller"
  | "csi-snapshotter"
  | "csi-provisioner"
  | "csi-sanity"
  | "coredns"
  | "knative-controller"
  | "knative-webhook"
  | "knative-autoscaler"
  | "knative-activator"
  | "knative-queue"
  | "helm";

function moduleOf(name: BinaryName): ToolModule {
  for (const m of Object.values(modules) as ToolModule[]) if (name in m.packages) return m;
  throw new Error(`unknown binary ${name}`);
}

/** The version a tools module pins for its main module, read from its go.mod. */
export function pinnedVersion(mod: ToolModule): Promise<string> {
  return requiredVersion(mod.dir, mod.versionOf);
}

/** The version of `module` that toolchain/<dir>/go.mod requires (a dependency's too, such as Serving's networking). */
export async function requiredVersion(dir: string, module: string): Promise<string> {
  const gomod = await readFile(path.join(toolchainDir, dir, "go.mod"), "utf8");
  const re = new RegExp(`^\\s*(?:require\\s+)?${module.replace(/[./]/g, "\\$&")}\\s+(v\\S+)`, "m");
  const found = re.exec(gomod);
  if (!found?.[1]) throw new Error(`toolchain/${dir}/go.mod does not require ${module}`);
  return found[1];
}

async function moduleHash(mod: ToolModule): Promise<string> {
  const h = createHash("sha256");
  // The module's own Go files too (toolchain/dns's main.go): they are part of what it builds.
  const own = (await readdir(path.join(toolchainDir, mod.dir))).filter((f) => f.endsWith(".go")).sort();
  for (const f of ["go.mod", "go.sum", ...own]) h.update(await readFile(path.join(toolchainDir, mod.dir, f)));
  h.update(mod.ldflags("v0"));
  h.update(JSON.stringify(mod.env ?? {}));
  return h.digest("hex").slice(0, 10);
}

async function isExecutable(p: string): Promise<boolean> {
  try {
    await access(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function assetEnvName(name: BinaryName): string {
  return `TEST_ASSET_${name.toUpperCase().replace(/-/g, "_")}`;
}

export class ToolchainError extends Error {
  override name = "ToolchainError";
}

async function goAvailable(): Promise<string | undefined> {
  try {
    const { stdout } = await run("go", ["version"]);
    return stdout.trim();
  } catch {
    return undefined;
  }
}

/** Where a binary comes from: the user's assets, the cache, or a fresh build. */
export async function resolveBinary(name: BinaryName, log: (line: string) => void = () => {}): Promise<string> {
  const fromEnv = process.env[assetEnvName(name)];
  if (fromEnv) {
    if (!(await isExecutable(fromEnv))) throw new ToolchainError(`${assetEnvName(name)}=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  const assets = process.env.KUBEBUILDER_ASSETS;
  if (assets && (await isExecutable(path.join(assets, name)))) return path.join(assets, name);

  const mod = moduleOf(name);
  const version = await pinnedVersion(mod);
  const dir = path.join(cacheDir(), "bin", `${mod.dir}-${version}-${await moduleHash(mod)}`);
  const target = path.join(dir, name);
  if (await isExecutable(target)) return target;

  const go = await goAvailable();
  if (!go) {
    throw new ToolchainError(
      `${name} is missing: no ${assetEnvName(name)}, no ${name} in KUBEBUILDER_ASSETS` +
        `${assets ? ` (${assets})` : ""}, no cached build at ${target}, and no Go on the PATH to build ` +
        `${mod.versionOf}@${version} from toolchain/${mod.dir}. Install Go 1.26 or point ${assetEnvName(name)} at a binary.`,
    );
  }
  await buildModule(mod, version, dir, log);
  return target;
}

/** Builds every binary of one tools module into its cache directory, atomically. */
async function buildModule(mod: ToolModule, version: string, dir: string, log: (line: string) => void): Promise<void> {
  await mkdir(path.dirname(dir), { recursive: true });
  const tmp = await mkdtemp(`${dir}.tmp-`);
  const started = Date.now();
  log(`Building ${Object.keys(mod.packages).join(", ")} (${mod.versionOf}@${version}) into ${dir}; the first build takes minutes.`);
  try {
    // One `go build -o <name>` per binary: a module-root package such as etcd's would otherwise be named after
    // its major-version path element. The shared build cache makes the second link cheap.
    for (const [name, pkg] of Object.entries(mod.packages)) {
      await run("go", ["build", "-ldflags", mod.ldflags(version), "-o", path.join(tmp, name), pkg], {
        cwd: path.join(toolchainDir, mod.dir),
        env: { ...process.env, GOFLAGS: "-mod=mod", ...mod.env },
        maxBuffer: 64 * 1024 * 1024,
      });
    }
    await writeFile(path.join(tmp, "VERSION"), `${mod.versionOf} ${version}\n`);
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
    log(`Built ${mod.dir} in ${((Date.now() - started) / 1000).toFixed(0)} s.`);
  } catch (cause) {
    await rm(tmp, { recursive: true, force: true });
    const stderr = (cause as { stderr?: string }).stderr ?? "";
    throw new ToolchainError(`go build of toolchain/${mod.dir} failed:\n${stderr.slice(-4000)}`, { cause });
  }
}

/** All binaries the local cluster needs, resolved (and built if needed) one module at a time. */
export async function resolveClusterBinaries(log?: (line: string) => void) {
  return {
    etcd: await resolveBinary("etcd", log),
    kubeApiserver: await resolveBinary("kube-apiserver", log),
    kubeControllerManager: await resolveBinary("kube-controller-manager", log),
  };
}

export async function resolveResticBinaries(log?: (line: string) => void) {
  return { restic: await resolveBinary("restic", log), restServer: await resolveBinary("rest-server", log) };
}

/**
 * Upstream CRDs (and the KEDA operator's ClusterRole), read from their own files in the pinned Go modules (never copied into this repository).
 * The files are copied once into the cache, so a machine with KUBEBUILDER_ASSETS and no Go still finds them
 * after the first run.
 */
export const upstreamCrds = [
  {
    // The same version as the snapshot controller and csi-snapshotter the local cluster runs (toolchain/snapshotter).
    module: "github.com/kubernetes-csi/external-snapshotter/client/v8",
    version: "v8.7.0",
    files: [
      "config/crd/snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
      "config/crd/snapshot.storage.k8s.io_volumesnapshotcontents.yaml",
      "config/crd/snapshot.storage.k8s.io_volumesnapshots.yaml",
      // Upstream's kustomization installs these too; without them the snapshot controller waits 30 s for them
      // at every start, then runs without group snapshots.
      "config/crd/groupsnapshot.storage.k8s.io_volumegroupsnapshotclasses.yaml",
      "config/crd/groupsnapshot.storage.k8s.io_volumegroupsnapshotcontents.yaml",
      "config/crd/groupsnapshot.storage.k8s.io_volumegroupsnapshots.yaml",
    ],
  },
  {
    // The same version as the operator the local cluster runs (toolchain/keda), with every CRD it watches and
    // the ClusterRole it runs under.
    module: "github.com/kedacore/keda/v2",
    version: "v2.21.0",
    files: [
      "config/crd/bases/keda.sh_scaledjobs.yaml",
      "config/crd/bases/keda.sh_scaledobjects.yaml",
      "config/crd/bases/keda.sh_triggerauthentications.yaml",
      "config/crd/bases/keda.sh_clustertriggerauthentications.yaml",
      "config/crd/bases/eventing.keda.sh_cloudeventsources.yaml",
      "config/crd/bases/eventing.keda.sh_clustercloudeventsources.yaml",
      "config/rbac/role.yaml",
    ],
  },
  { module: "knative.dev/serving", version: "v0.50.0", files: ["config/core/300-resources/service.yaml"] },
  {
    // The same version as the ApiServerSource adapter the local cluster runs (toolchain/eventing).
    module: "knative.dev/eventing",
    version: "v0.50.0",
    files: ["config/core/resources/apiserversource.yaml", "config/core/resources/pingsource.yaml"],
  },
] as const;

/** Files of one upstream Go module at one version, cached under `kind.dir` so neither Go nor the network is needed again. */
export interface UpstreamFiles {
  readonly module: string;
  readonly version: string;
  readonly files: readonly string[];
}

/**
 * The files, cached by their base names (`kind.paths`: by their paths in the module, for a release config whose
 * directories repeat names).
 */
export async function upstreamFiles(src: UpstreamFiles, kind: { dir: string; what: string; paths?: boolean }, log: (line: string) => void): Promise<string[]> {
  const dir = path.join(cacheDir(), kind.dir, `${src.module.replace(/\//g, "_")}@${src.version}`);
  const cached = (f: string) => path.join(dir, kind.paths ? f : path.basename(f));
  const missing = src.files.filter((f) => !existsSync(cached(f)));
  if (missing.length > 0) {
    if (!(await goAvailable())) {
      throw new ToolchainError(`The ${kind.what} of ${src.module}@${src.version} are not cached in ${dir} and there is no Go to download them.`);
    }
    log(`Downloading ${src.module}@${src.version} for its ${kind.what}.`);
    await mkdir(cacheDir(), { recursive: true });
    const { stdout } = await run("go", ["mod", "download", "-json", `${src.module}@${src.version}`], {
      cwd: cacheDir(),
      env: { ...process.env, GOFLAGS: "-mod=mod" },
      maxBuffer: 16 * 1024 * 1024,
    }).catch((cause: unknown) => {
      throw new ToolchainError(`go mod download ${src.module}@${src.version} failed: ${(cause as { stderr?: string }).stderr ?? cause}`, { cause });
    });
    const info = JSON.parse(stdout) as { Dir?: string; Error?: string };
    if (!info.Dir) throw new ToolchainError(`go mod download ${src.module}@${src.version}: ${info.Error ?? "no Dir"}`);
    for (const f of src.files) {
      await mkdir(path.dirname(cached(f)), { recursive: true });
      await copyFile(path.join(info.Dir, f), cached(f));
    }
  }
  return src.files.map(cached);
}

export async function upstreamCrdFiles(log: (line: string) => void = () => {}): Promise<string[]> {
  const out: string[] = [];
  for (const src of upstreamCrds) out.push(...(await upstreamFiles(src, { dir: "crds", what: "CRDs" }, log)));
  return out;
}

/**
 * The RBAC the CSI machinery is deployed with, from the same modules and versions the local cluster runs
 * (toolchain/snapshotter, toolchain/provisioner): ServiceAccounts, ClusterRoles and their bindings, applied as they
 * are, so the controllers run with upstream's permissions and no more.
 */
export const upstreamRbac = {
  "snapshot-controller": {
    module: "github.com/kubernetes-csi/external-snapshotter/v8",
    version: "v8.7.0",
    files: ["deploy/kubernetes/snapshot-controller/rbac-snapshot-controller.yaml"],
  },
  "csi-snapshotter": {
    module: "github.com/kubernetes-csi/external-snapshotter/v8",
    version: "v8.7.0",
    files: ["deploy/kubernetes/csi-snapshotter/rbac-csi-snapshotter.yaml"],
  },
  "csi-provisioner": {
    module: "github.com/kubernetes-csi/external-provisioner/v6",
    version: "v6.4.0",
    files: ["deploy/kubernetes/rbac.yaml"],
  },
} as const satisfies Record<string, UpstreamFiles>;

/** The upstream RBAC file of one CSI controller, from the cache or downloaded once. */
export async function upstreamRbacFile(name: keyof typeof upstreamRbac, log: (line: string) => void = () => {}): Promise<string> {
  const [file] = await upstreamFiles(upstreamRbac[name], { dir: "rbac", what: "RBAC" }, log);
  if (!file) throw new ToolchainError(`${upstreamRbac[name].module} gave no RBAC file for ${name}`);
  return file;
}

/** The CSI spec the local node agent's driver implements (cluster/csi-driver.ts), read from its own module. */
export const CSI_SPEC = { module: "github.com/container-storage-interface/spec", version: "v1.13.0", files: ["csi.proto"] } as const;

/** The kubelet's plugin registration API, through which a CSI driver's node plugin registers (cluster/csi-driver.ts). */
export const PLUGIN_REGISTRATION = { module: "k8s.io/kubelet", version: "v0.36.3", files: ["pkg/apis/pluginregistration/v1/api.proto"] } as const;

export async function pluginRegistrationProtoFile(log: (line: string) => void = () => {}): Promise<string> {
  const [file] = await upstreamFiles(PLUGIN_REGISTRATION, { dir: "proto", what: "plugin registration API" }, log);
  if (!file) throw new ToolchainError(`${PLUGIN_REGISTRATION.module}@${PLUGIN_REGISTRATION.version} gave no api.proto`);
  return file;
}

/** csi.proto of CSI_SPEC, from the cache or downloaded once. */
export async function csiProtoFile(log: (line: string) => void = () => {}): Promise<string> {
  const [file] = await upstreamFiles(CSI_SPEC, { dir: "proto", what: "csi.proto" }, log);
  if (!file) throw new ToolchainError(`${CSI_SPEC.module}@${CSI_SPEC.version} gave no csi.proto`);
  return file;
}

/**
 * The Debian packages the local cluster runs or builds with, by a command (or file) each provides: mmdebstrap and
 * umoci make Walle's images and skopeo moves them; the real node is containerd, runc, the standard CNI plugins and
 * iproute2's `ip` (its network namespace); attr gives the fidelity tests setfattr; buildah builds the Dockerfile
 * against locally made bases (test/integration/dockerfile.test.ts).
 */
export const debianPackages = {
  mmdebstrap: "mmdebstrap",
  umoci: "umoci",
  skopeo: "skopeo",
  containerd: "containerd",
  runc: "runc",
  "/usr/lib/cni/bridge": "containernetworking-plugins",
  ip: "iproute2",
  setfattr: "attr",
  buildah: "buildah",
  // The README's curl triggers name each event with $(uuidgen); the end-to-end test runs them as written.
  uuidgen: "uuid-runtime",
} as const;

/**
 * Installs the Debian packages of `debianPackages` that are missing (by the command each provides), as root with
 * apt-get, as the first run of `npm test` or `npm start` must on a fresh machine; otherwise fails naming them.
 */
export async function ensureDebianPackages(log: (line: string) => void = () => {}): Promise<void> {
  const missing: string[] = [];
  for (const [command, pkg] of Object.entries(debianPackages)) {
    const present = command.startsWith("/")
      ? isExecutable(command)
      : run("sh", ["-c", `command -v ${command}`], { env: { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` } }).then(
          () => true,
          () => false,
        );
    if (!(await present)) missing.push(pkg);
  }
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0 || !(await isExecutable("/usr/bin/apt-get"))) {
    throw new ToolchainError(`the local cluster needs the Debian packages ${missing.join(", ")}: apt-get install ${missing.join(" ")}`);
  }
  log(`Installing the Debian packages ${missing.join(", ")} with apt-get.`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  try {
    await run("apt-get", ["update", "-qq"], { env, maxBuffer: 16 * 1024 * 1024 });
    await run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { env, maxBuffer: 64 * 1024 * 1024 });
  } catch (cause) {
    throw new ToolchainError(`apt-get install ${missing.join(" ")} failed:\n${((cause as { stderr?: string }).stderr ?? "").slice(-2000)}`, { cause });
  }
}

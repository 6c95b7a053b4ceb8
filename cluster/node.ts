// The local cluster's real node: Debian's containerd and runc, and the kubelet, kube-proxy and kube-scheduler built
// at the control plane's version (toolchain/node), with the cluster's DNS (cluster/dns.ts), running pods of Walle's images (scripts/images.ts) for real,
// pulled from a local registry (CNCF Distribution, toolchain/registry) that containerd mirrors docker.io and
// ghcr.io to.
//
// Everything the node serves stays off the machine's external interface: the kubelet and containerd run in a
// network namespace the cluster creates, joined to the host by one veth pair with addresses of their own, and
// pods get theirs from the standard CNI plugins (bridge, host-local) inside it. The node reaches the API server,
// which listens on loopback only, through a forwarder on the host end of that link. containerd has a config,
// root, state and socket of its own; the kubelet a root directory of its own, made a shared mount so the volumes
// it mounts reach containerd, in a mount namespace where the three host sysctls it would rewrite are masked.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { stringify } from "yaml";
import type { BuiltImage, ImageName } from "../scripts/images.ts";
import type { RestClient } from "../lib/k8s/rest.ts";
import { DRIVER, NODE_NAME } from "./csi.ts";
import { serveRegistration, unmountUnder, type Registration } from "./csi-driver.ts";
import { issueClient, issueServing, writeKubeconfig, type CertPair, type Pki } from "./pki.ts";
import { DNS_USER, startClusterDns } from "./dns.ts";
import { startProcess, tail, waitUntil, type Managed } from "./processes.ts";

const run = promisify(execFile);

/** Where an image of Walle's is known to the node's containerd (the name pods use for it). */
export const nodeImageName = (name: ImageName, tag: string): string => `docker.io/library/${name}:${tag}`;

export interface NodeNetwork {
  /** The network namespace the node runs in (under /run/netns). */
  readonly netns: string;
  /** The host's end of the link: the node and its pods reach the host's servers there. */
  readonly hostIp: string;
  /** The node's address (its InternalIP), where the API server reaches the kubelet. */
  readonly nodeIp: string;
  /** The pods' addresses, routed from the host through the node. */
  readonly podCidr: string;
  readonly hostLink: string;
}

export interface RealNode {
  readonly name: string;
  readonly network: NodeNetwork;
  readonly containerdSocket: string;
  readonly processes: readonly Managed[];
  stop(): Promise<void>;
}

export interface RealNodeOptions {
  readonly api: RestClient;
  readonly stateDir: string;
  readonly pki: Pki;
  /** The API server's port on 127.0.0.1. */
  readonly apiPort: number;
  readonly kubelet: string;
  readonly kubeProxy: string;
  readonly kubeScheduler: string;
  readonly coredns: string;
  readonly registry: string;
  /** The CSI driver's socket (cluster/csi-driver.ts), which the kubelet calls to publish volumes. */
  readonly csiSocket: string;
  readonly images: Readonly<Record<ImageName, BuiltImage>>;
  readonly log?: (msg: string, extra?: Record<string, unknown>) => void;
}

const sh = (cmd: string, args: readonly string[]) => run(cmd, args, { maxBuffer: 16 * 1024 * 1024 });

/** Where local clusters claim their node networks, one directory per network (its owner's state directory inside). */
const CLAIMS = "/run/walle/node-networks";

const networkOf = (k: number): NodeNetwork => ({
  netns: `walle-${k}`,
  hostIp: `10.213.${k}.1`,
  nodeIp: `10.213.${k}.2`,
  podCidr: `10.214.${k}.0/24`,
  hostLink: `walle${k}h`,
});
const networkFile = (stateDir: string) => path.join(stateDir, "node-network.json");

/**
 * Claims a /30 link and a /24 of pods for the local cluster in `stateDir`, one no other running cluster holds: the
 * first free one from a hash of the state directory. A claim whose owner's state directory is gone is taken over.
 */
export async function allocateNodeNetwork(stateDir: string): Promise<NodeNetwork> {
  await mkdir(CLAIMS, { recursive: true });
  const start = parseInt(createHash("sha256").update(stateDir).digest("hex").slice(0, 6), 16) % 250;
  for (let i = 0; i < 250; i++) {
    const k = 1 + ((start + i) % 250);
    const claim = path.join(CLAIMS, String(k));
    const owner = await readFile(path.join(claim, "owner"), "utf8").catch(() => undefined);
    if (owner !== undefined && owner !== stateDir && existsSync(owner)) continue;
    await rm(claim, { recursive: true, force: true });
    try {
      await mkdir(claim); // atomic: of two clusters racing for it, one wins
    } catch {
      continue;
    }
    await writeFile(path.join(claim, "owner"), stateDir);
    const network = networkOf(k);
    await writeFile(networkFile(stateDir), JSON.stringify({ k }));
    return network;
  }
  throw new Error(`no free node network: 250 local clusters hold one (${CLAIMS})`);
}

/** The node network claimed for the local cluster in `stateDir` (allocateNodeNetwork). */
export function nodeNetwork(stateDir: string): NodeNetwork {
  const text = (() => {
    try {
      return readFileSync(networkFile(stateDir), "utf8");
    } catch {
      throw new Error(`the local cluster in ${stateDir} has claimed no node network (${networkFile(stateDir)})`);
    }
  })();
  return networkOf((JSON.parse(text) as { k: number }).k);
}

async function releaseNetwork(stateDir: string, n: NodeNetwork): Promise<void> {
  const claim = path.join(CLAIMS, n.netns.replace("walle-", ""));
  if ((await readFile(path.join(claim, "owner"), "utf8").catch(() => undefined)) === stateDir) await rm(claim, { recursive: true, force: true });
}

/**
 * The node's own cgroup root, `/<netns>` in every v1 hierarchy (and the unified one), which its kubelet puts its
 * pods under. Not the host's `/kubepods`: a kubelet removes the pod cgroups there that it does not know, so a second
 * local cluster's kubelet would take this one's pods apart (their sandboxes "changed" and were re-created).
 */
const CGROUP_FS = "/sys/fs/cgroup";

async function cgroupHierarchies(): Promise<string[]> {
  const entries = await readdir(CGROUP_FS, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => path.join(CGROUP_FS, e.name));
}

async function createCgroupRoot(name: string): Promise<void> {
  for (const hierarchy of await cgroupHierarchies()) {
    const dir = path.join(hierarchy, name);
    await mkdir(dir, { recursive: true });
    // A cpuset cgroup takes no task until it has CPUs and memory nodes: the parent's, as cgroup v1 leaves it to us.
    for (const file of ["cpuset.cpus", "cpuset.mems"]) {
      const parent = await readFile(path.join(hierarchy, file), "utf8").catch(() => undefined);
      if (parent !== undefined && (await readFile(path.join(dir, file), "utf8")).trim() === "") await writeFile(path.join(dir, file), parent);
    }
  }
}

/** Removes the node's cgroup root, deepest first (a cgroup goes only once it has no children and no tasks). */
async function removeCgroupRoot(name: string): Promise<void> {
  const removeTree = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory()) await removeTree(path.join(dir, e.name));
    await rmdir(dir).catch(() => {});
  };
  for (const hierarchy of await cgroupHierarchies()) await removeTree(path.join(hierarchy, name));
}

async function removeNetwork(n: NodeNetwork): Promise<void> {
  await sh("ip", ["link", "del", n.hostLink]).catch(() => {});
  await sh("ip", ["netns", "del", n.netns]).catch(() => {});
}

async function createNetwork(n: NodeNetwork): Promise<void> {
  await removeNetwork(n);
  const inNs = (...args: string[]) => sh("ip", ["-n", n.netns, ...args]);
  await sh("ip", ["netns", "add", n.netns]);
  await sh("ip", ["link", "add", n.hostLink, "type", "veth", "peer", "name", "eth0", "netns", n.netns]);
  await sh("ip", ["addr", "add", `${n.hostIp}/30`, "dev", n.hostLink]);
  await sh("ip", ["link", "set", n.hostLink, "up"]);
  await inNs("addr", "add", `${n.nodeIp}/30`, "dev", "eth0");
  await inNs("link", "set", "eth0", "up");
  await inNs("link", "set", "lo", "up");
  await inNs("route", "add", "default", "via", n.hostIp);
  await sh("ip", ["route", "add", n.podCidr, "via", n.nodeIp]);
  // The node routes between its link and its pods' bridge; the sysctl is the namespace's own.
  await sh("nsenter", [`--net=/run/netns/${n.netns}`, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
}

/** A TCP forwarder from `host:port` to 127.0.0.1:`port`, for the API server that listens on loopback only. */
async function forward(host: string, port: number): Promise<net.Server> {
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    client.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close);
    upstream.on("error", close);
  });
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(port, host, resolve));
  return server;
}

function containerdConfig(dir: string, n: NodeNetwork, pause: string): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return [
    "version = 2",
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    "[grpc]",
    `  address = "${dir}/containerd.sock"`,
    "[ttrpc]",
    `  address = "${dir}/containerd.sock.ttrpc"`,
    "[debug]",
    '  address = ""',
    "[metrics]",
    '  address = ""',
    `[${cri}]`,
    `  sandbox_image = "${pause}"`,
    // No CAP_SYS_RESOURCE here: a negative oom_score_adj would fail.
    "  restrict_oom_score_adj = true",
    "  disable_apparmor = true",
    "  enable_selinux = false",
    `  stream_server_address = "${n.nodeIp}"`,
    // The pods' network namespaces under the state directory, not /run/netns, so stopping cleans them up too.
    "  netns_mounts_under_state_dir = true",
    `[${cri}.containerd]`,
    '  snapshotter = "overlayfs"',
    '  default_runtime_name = "runc"',
    `[${cri}.containerd.runtimes.runc]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `[${cri}.containerd.runtimes.runc.options]`,
    "  SystemdCgroup = false",
    `[${cri}.registry]`,
    `  config_path = "${dir}/certs.d"`,
    `[${cri}.cni]`,
    '  bin_dir = "/usr/lib/cni"',
    `  conf_dir = "${dir}/cni"`,
    "",
  ].join("\n");
}

/** A bridge in the node's namespace, addresses from its own range, leases kept in the node's own state. */
function cniConfig(n: NodeNetwork, dir: string): string {
  const ipam = { type: "host-local", ranges: [[{ subnet: n.podCidr }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: path.join(dir, "cni-leases") };
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: "walle",
    plugins: [{ type: "bridge", bridge: "cni0", isGateway: true, ipMasq: false, hairpinMode: true, ipam }],
  });
}

/**
 * The names the local registry serves each image under: Walle's own as `docker.io/library/<image>` and as the
 * manifests and the local install name them (`ghcr.io/ros-io/<image>`), and the shell image as the stand-in for the
 * busybox-based images that examples and tests run (alpine, busybox). containerd reaches docker.io and ghcr.io
 * through the registry (a mirror), so any pull policy works as on a cluster with a registry of its own.
 */
export function registryNames(version: string): readonly (readonly [ImageName, string])[] {
  const walle = (["walle-reconcile", "walle-tick", "walle-worker"] as const).flatMap(
    (image) =>
      [
        [image, nodeImageName(image, version)],
        [image, nodeImageName(image, "latest")],
        [image, `ghcr.io/ros-io/${image}:${version}`],
        [image, `ghcr.io/ros-io/${image}:dev`],
        [image, `ghcr.io/ros-io/${image}:latest`],
      ] as const,
  );
  return [
    ...walle,
    ["walle-shell", nodeImageName("walle-shell", version)],
    ["walle-shell", "docker.io/library/alpine:latest"],
    ["walle-shell", "docker.io/library/busybox:latest"],
    ["walle-shell", "docker.io/library/busybox:1.36"],
    ["walle-pause", nodeImageName("walle-pause", version)],
  ];
}

/**
 * containerd's registry hosts: docker.io, ghcr.io and gcr.io (where Knative publishes its images) resolved at the
 * local registry (plain HTTP, on the link).
 */
async function registryHosts(dir: string, registry: string): Promise<void> {
  for (const [host, server] of [
    ["docker.io", "https://registry-1.docker.io"],
    ["ghcr.io", "https://ghcr.io"],
    ["gcr.io", "https://gcr.io"],
  ] as const) {
    await mkdir(path.join(dir, host), { recursive: true });
    await writeFile(path.join(dir, host, "hosts.toml"), `server = "${server}"\n\n[host."http://${registry}"]\n  capabilities = ["pull", "resolve"]\n`);
  }
}

/** Pushes every image under each of its names to the registry, as `skopeo copy` pushes to any registry. */
async function pushImages(registry: string, images: Readonly<Record<ImageName, BuiltImage>>): Promise<void> {
  const version = Object.values(images)[0]?.tag ?? "latest";
  for (const [name, reference] of registryNames(version)) await pushImage(registry, images[name], reference);
}

/** The node's registry, where it pulls every image from (the host end of its link). */
export const nodeRegistry = (n: NodeNetwork): string => `${n.hostIp}:5000`;

/** Pushes one image to the node's registry as `reference` (`ghcr.io/…`, `gcr.io/…`: the registry mirrors those hosts). */
export async function pushImage(registry: string, image: BuiltImage, reference: string): Promise<void> {
  const pathAndTag = reference.replace(/^[^/]+\//, "");
  await sh("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", `oci:${image.layout}:${image.tag}`, `docker://${registry}/${pathAndTag}`]);
}

/** Stops every pod sandbox's containers and unmounts what the node mounted, so the state directory can go. */
async function cleanUp(root: string, socket: string): Promise<void> {
  if (existsSync(socket)) {
    const ctr = (...args: string[]) => sh("ctr", ["--address", socket, "--namespace", "k8s.io", ...args]);
    const { stdout } = await ctr("tasks", "ls", "--quiet").catch(() => ({ stdout: "" }));
    for (const id of stdout.split("\n").filter(Boolean)) await ctr("tasks", "kill", "--signal", "SIGKILL", id).catch(() => {});
    for (const id of stdout.split("\n").filter(Boolean)) await ctr("tasks", "delete", "--force", id).catch(() => {});
  }
  await unmountUnder(root);
}

/** The sysctls the kubelet would set on the host; masked with the values it wants, it leaves them alone. */
const KUBELET_SYSCTLS: Readonly<Record<string, string>> = { "vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1" };

export async function startRealNode(o: RealNodeOptions): Promise<RealNode> {
  const log = o.log ?? (() => {});
  const n = nodeNetwork(o.stateDir);
  const dir = path.join(o.stateDir, "node");
  const containerdDir = path.join(dir, "containerd");
  const kubeletRoot = path.join(dir, "kubelet");
  const socket = path.join(containerdDir, "containerd.sock");
  const logs = path.join(o.stateDir, "logs");
  const processes: Managed[] = [];
  /** A kubeconfig for a node component, through the forwarder; the API server's certificate names "kubernetes". */
  const nodeKubeconfig = async (file: string, user: string, cert: CertPair) => {
    await writeKubeconfig(file, `https://${n.hostIp}:${o.apiPort}`, o.pki.caCert, { name: user, cert });
    const config = JSON.parse(await readFile(file, "utf8")) as { clusters: { cluster: Record<string, string> }[] };
    for (const c of config.clusters) c.cluster["tls-server-name"] = "kubernetes";
    await writeFile(file, JSON.stringify(config, null, 2));
    return file;
  };
  let forwarder: net.Server | undefined;
  let registration: Registration | undefined;
  const stop = async () => {
    for (const p of processes.filter((p) => p.name === "kubelet")) await p.stop();
    await registration?.stop();
    await cleanUp(dir, socket);
    for (const p of processes.filter((p) => p.name !== "kubelet")) await p.stop();
    await cleanUp(dir, socket);
    forwarder?.close();
    await removeCgroupRoot(n.netns);
    await removeNetwork(n);
    await releaseNetwork(o.stateDir, n);
  };
  try {
    await cleanUp(dir, socket); // what a harness killed hard left behind
    await mkdir(path.join(containerdDir, "cni"), { recursive: true });
    await mkdir(kubeletRoot, { recursive: true });
    await mkdir(logs, { recursive: true });
    await createNetwork(n);
    await createCgroupRoot(n.netns);
    forwarder = await forward(n.hostIp, o.apiPort);

    // The registry, on the host end of the link: only the node and the host reach it.
    const registry = nodeRegistry(n);
    await writeFile(
      path.join(dir, "registry.yaml"),
      stringify({
        version: 0.1,
        log: { level: "warn", accesslog: { disabled: true } },
        storage: { filesystem: { rootdirectory: path.join(dir, "registry") } },
        http: { addr: registry },
      }),
    );
    const registryProcess = startProcess("registry", o.registry, ["serve", path.join(dir, "registry.yaml")], path.join(logs, "registry.log"));
    processes.push(registryProcess);
    await waitUntil("the registry", async () => (await fetch(`http://${registry}/v2/`)).ok, 30_000, processes);
    const pushed = Date.now();
    await pushImages(registry, o.images);
    log("Images pushed to the local registry.", { ms: Date.now() - pushed });
    await registryHosts(path.join(containerdDir, "certs.d"), registry);

    const pause = nodeImageName("walle-pause", o.images["walle-pause"].tag);
    await writeFile(path.join(containerdDir, "config.toml"), containerdConfig(containerdDir, n, pause));
    await writeFile(path.join(containerdDir, "cni", "10-walle.conflist"), cniConfig(n, containerdDir));
    const containerd = startProcess(
      "containerd",
      "nsenter",
      [`--net=/run/netns/${n.netns}`, "--", "containerd", "--config", path.join(containerdDir, "config.toml")],
      path.join(logs, "containerd.log"),
    );
    processes.push(containerd);
    await waitUntil("containerd", async () => await sh("ctr", ["--address", socket, "version"]).then(() => true), 30_000, [containerd]);

    // The kubelet's identity (the Node authorizer's system:node:<name>), its serving certificate for the API
    // server's logs and exec, and its configuration.
    const client = await issueClient(o.pki, `system:node:${NODE_NAME}`, ["system:nodes"]);
    const serving = await issueServing(o.pki, "kubelet-walle-node", [n.nodeIp], [NODE_NAME]);
    const kubeconfig = await nodeKubeconfig(path.join(dir, "kubelet.kubeconfig"), `system:node:${NODE_NAME}`, client);
    // The cluster's DNS first, so every pod's nameserver answers from its start.
    const dnsKubeconfig = await nodeKubeconfig(path.join(dir, "coredns.kubeconfig"), DNS_USER, await issueClient(o.pki, DNS_USER));
    processes.push(await startClusterDns({ api: o.api, coredns: o.coredns, netns: n.netns, address: n.nodeIp, kubeconfig: dnsKubeconfig, dir, logs }));
    // The node's own resolver knows nothing (nor does the machine: no network beyond its own); pods get the
    // cluster's DNS (clusterDNS) with the usual search path.
    await writeFile(path.join(dir, "resolv.conf"), "");
    await writeFile(
      path.join(dir, "kubelet.yaml"),
      stringify({
        apiVersion: "kubelet.config.k8s.io/v1beta1",
        kind: "KubeletConfiguration",
        address: n.nodeIp,
        port: 10250,
        readOnlyPort: 0,
        healthzBindAddress: "127.0.0.1",
        healthzPort: 10248,
        tlsCertFile: serving.cert,
        tlsPrivateKeyFile: serving.key,
        authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: o.pki.caCert } },
        authorization: { mode: "Webhook" },
        containerRuntimeEndpoint: `unix://${socket}`,
        // cgroups are v1 here and PID 1 is not systemd.
        failCgroupV1: false,
        cgroupDriver: "cgroupfs",
        cgroupRoot: `/${n.netns}`,
        makeIPTablesUtilChains: false,
        resolvConf: path.join(dir, "resolv.conf"),
        clusterDomain: "cluster.local",
        clusterDNS: [n.nodeIp],
        // Keep every pod this machine's disk and memory can hold: eviction is not what the tests are about.
        evictionHard: { "memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%" },
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        serializeImagePulls: false,
        fileCheckFrequency: "1s",
        syncFrequency: "10s",
        nodeStatusUpdateFrequency: "10s",
        volumePluginDir: path.join(dir, "volume-plugins"),
        // Not the host's /var/log/pods: a kubelet removes the log directories there of pods it does not know, so
        // a second local cluster's node would take this one's containers' logs away (and crash them).
        podLogsDir: path.join(dir, "pod-logs"),
        staticPodPath: "",
        registerNode: true,
        registerWithTaints: [],
      }),
    );
    const masks: string[] = [];
    for (const [key, value] of Object.entries(KUBELET_SYSCTLS)) {
      const file = path.join(dir, `sysctl-${key.replace("/", "-")}`);
      await writeFile(file, `${value}\n`);
      masks.push(`mount --bind ${file} /proc/sys/${key}`);
    }
    // The kubelet's root, a mount shared with the host's mount namespace, so volumes it mounts there reach
    // containerd; /proc private in its own namespace, so the sysctl masks stay there.
    await sh("mount", ["--bind", kubeletRoot, kubeletRoot]);
    await sh("mount", ["--make-shared", kubeletRoot]);
    // The CSI driver's registration socket, which the kubelet's plugin watcher finds in plugins_registry.
    registration = await serveRegistration(path.join(kubeletRoot, "plugins_registry", `${DRIVER}-reg.sock`), o.csiSocket, log);
    const kubeletArgs = [
      `--config=${path.join(dir, "kubelet.yaml")}`,
      `--kubeconfig=${kubeconfig}`,
      `--root-dir=${kubeletRoot}`,
      `--cert-dir=${path.join(dir, "pki")}`,
      `--node-ip=${n.nodeIp}`,
      `--hostname-override=${NODE_NAME}`,
      "--v=1",
    ];
    const script = ["set -e", "mount --make-rprivate /proc", ...masks, `exec ${o.kubelet} ${kubeletArgs.map((a) => `'${a}'`).join(" ")}`].join("\n");
    const kubelet = startProcess(
      "kubelet",
      "nsenter",
      [`--net=/run/netns/${n.netns}`, "--", "unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c", script],
      path.join(logs, "kubelet.log"),
    );
    processes.push(kubelet);
    await waitUntil(
      `Node ${NODE_NAME} Ready`,
      async () => {
        const node = await o.api.get<{ status?: { conditions?: { type: string; status: string }[] } }>(`/api/v1/nodes/${NODE_NAME}`);
        return node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
      },
      120_000,
      processes,
    );
    // kube-proxy, in the node's namespace, makes Services reach their endpoints from pods, as on any node: the
    // `kubernetes` Service's address leads to the API server (its advertised address is the host end of the link).
    const proxyKubeconfig = await nodeKubeconfig(path.join(dir, "kube-proxy.kubeconfig"), "system:kube-proxy", await issueClient(o.pki, "system:kube-proxy"));
    await writeFile(
      path.join(dir, "kube-proxy.yaml"),
      stringify({
        apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
        kind: "KubeProxyConfiguration",
        clientConnection: { kubeconfig: proxyKubeconfig },
        mode: "iptables",
        clusterCIDR: n.podCidr,
        hostnameOverride: NODE_NAME,
        bindAddress: n.nodeIp,
        healthzBindAddress: `${n.nodeIp}:10256`,
        metricsBindAddress: "127.0.0.1:10249",
        // Leave the conntrack sysctls as they are: they are the host's, not the namespace's.
        conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: "0s", tcpCloseWaitTimeout: "0s" },
      }),
    );
    const proxy = startProcess(
      "kube-proxy",
      "nsenter",
      [`--net=/run/netns/${n.netns}`, "--", o.kubeProxy, `--config=${path.join(dir, "kube-proxy.yaml")}`, "--v=1"],
      path.join(logs, "kube-proxy.log"),
    );
    processes.push(proxy);
    // Healthy once it has written the Services' rules.
    await waitUntil("kube-proxy /healthz", async () => (await fetch(`http://${n.nodeIp}:10256/healthz`)).ok, 60_000, processes);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      registration.registered,
      kubelet.exited.then((how) => Promise.reject(new Error(`the kubelet exited (${how}) before registering CSI driver ${DRIVER}`))),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`the kubelet did not register CSI driver ${DRIVER} in 60 s`)), 60_000))),
    ]).finally(() => clearTimeout(timer));
    // kube-scheduler places every pod; the node is the cluster's only one.
    const schedulerKubeconfig = await writeKubeconfig(path.join(dir, "kube-scheduler.kubeconfig"), `https://127.0.0.1:${o.apiPort}`, o.pki.caCert, {
      name: "system:kube-scheduler",
      cert: await issueClient(o.pki, "system:kube-scheduler"),
    });
    processes.push(
      startProcess(
        "kube-scheduler",
        o.kubeScheduler,
        [`--kubeconfig=${schedulerKubeconfig}`, "--leader-elect=false", "--secure-port=0", "--v=1"],
        path.join(logs, "kube-scheduler.log"),
      ),
    );
    log("The real node is ready.", { node: NODE_NAME, ip: n.nodeIp });
  } catch (err) {
    const detail = await Promise.all(processes.map(async (p) => `--- ${p.name}\n${await tail(p.logFile, 20)}`));
    await stop().catch(() => {});
    throw new Error(`the real node did not start: ${(err as Error).message}\n${detail.join("\n")}`, { cause: err });
  }
  return { name: NODE_NAME, network: n, containerdSocket: socket, processes, stop };
}

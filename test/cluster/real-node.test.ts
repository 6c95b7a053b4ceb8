// The local cluster's real node: Debian's containerd and runc under the kubelet built at the control plane's
// version, running pods of Walle's own images. What a pod sees there is what runc gives it, read from inside.
import { execFile } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, inject, it } from "vitest";
import { NODE_NAME } from "../../cluster/csi.ts";
import { nodeImageName, nodeNetwork } from "../../cluster/node.ts";
import { cacheDir, repoRoot } from "../../cluster/toolchain.ts";
import { podEnvironment } from "../../lib/restic/secret-env.ts";
import { JobType } from "../../lib/api/constants.ts";
import { NONROOT, PRIVILEGED_CAPABILITIES, UNPRIVILEGED, workerSecurity, type WorkerMode } from "../../lib/core/privileges.ts";
import type { Pod } from "../../lib/api/kube.ts";
import { packageVersion } from "../../scripts/images.ts";
import { listSnapshots, startRestServer, tempDir } from "../integration/worker-harness.ts";
import { pvcWithData, volumeDir } from "../support/backup-fixtures.ts";
import { admin, createNamespace, waitFor } from "../support/kube.ts";

const run = promisify(execFile);
const kubectl = (...args: string[]) => run("kubectl", ["--kubeconfig", inject("kubeconfig"), ...args]).then((r) => r.stdout);

/** Linux capability numbers (capability.h), for reading CapEff. */
const CAPABILITY_BITS: Readonly<Record<string, number>> = { CHOWN: 0, DAC_OVERRIDE: 1, FOWNER: 3, FSETID: 4, MKNOD: 27, SETFCAP: 31 };
const capMask = (caps: readonly string[]) => caps.reduce((m, c) => m | (1n << BigInt(CAPABILITY_BITS[c] ?? -1)), 0n);

async function podOnNode(ns: string, name: string, spec: Record<string, unknown>): Promise<void> {
  await admin().create(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name },
    spec: { nodeName: NODE_NAME, automountServiceAccountToken: false, restartPolicy: "Never", ...spec },
  });
}

const phase = (ns: string, name: string, wanted: string) =>
  waitFor(
    async () => {
      const pod = await admin().get<Pod>(`/api/v1/namespaces/${ns}/pods/${name}`);
      if (pod.status?.phase === "Failed" && wanted !== "Failed") throw new Error(`pod ${name} failed: ${JSON.stringify(pod.status.containerStatuses)}`);
      return pod.status?.phase === wanted ? pod : undefined;
    },
    `pod ${name} ${wanted}`,
    60_000,
  );

/** What a process of the worker image sees of itself: its ids, capabilities, seccomp and the files around it. */
const SELF_REPORT = `
const fs = require("fs");
const status = Object.fromEntries(fs.readFileSync("/proc/self/status", "utf8").split("\\n").filter(Boolean).map((l) => l.split(":\\t")));
let rootWrite;
try { fs.writeFileSync("/app/planted", "x"); rootWrite = "written"; } catch (e) { rootWrite = e.code; }
const seen = JSON.parse(process.env.HOST_PATHS).filter((p) => fs.existsSync(p));
console.log(JSON.stringify({ uid: status.Uid.split("\\t")[0], capEff: status.CapEff, capBnd: status.CapBnd, capInh: status.CapInh, capAmb: status.CapAmb, noNewPrivs: status.NoNewPrivs, seccomp: status.Seccomp, rootWrite, seen }));
`;

async function workerReport(ns: string, name: string, mode: WorkerMode, command: string) {
  const tag = await packageVersion();
  const security = workerSecurity(mode, command);
  // Paths of this machine a container must not see: the checkout, the toolchain cache, the cluster's state.
  const hostPaths = [repoRoot, cacheDir(), inject("clusterStateDir"), path.join(repoRoot, "package.json")];
  await podOnNode(ns, name, {
    securityContext: security.pod,
    containers: [
      {
        name: "worker",
        image: nodeImageName("walle-worker", tag),
        command: ["/nodejs/bin/node", "-e", SELF_REPORT],
        env: [{ name: "HOST_PATHS", value: JSON.stringify(hostPaths) }],
        securityContext: security.container,
      },
    ],
  });
  await phase(ns, name, "Succeeded");
  return JSON.parse((await kubectl("logs", "-n", ns, name)).trim()) as Record<string, unknown>;
}

describe("the real node", () => {
  it("is a Ready Node of the control plane's version on containerd, at an address of the cluster's own network namespace", async () => {
    const version = await admin().get<{ gitVersion: string }>("/version");
    const node = await admin().get<{
      status: {
        nodeInfo: { kubeletVersion: string; containerRuntimeVersion: string };
        addresses: { type: string; address: string }[];
        conditions: { type: string; status: string }[];
      };
    }>(`/api/v1/nodes/${NODE_NAME}`);
    expect(node.status.nodeInfo.kubeletVersion).toBe(version.gitVersion);
    expect(node.status.nodeInfo.containerRuntimeVersion).toMatch(/^containerd:\/\/1\.6\./);
    expect(node.status.conditions.find((c) => c.type === "Ready")?.status).toBe("True");
    expect(node.status.addresses.find((a) => a.type === "InternalIP")?.address).toBe(nodeNetwork(inject("clusterStateDir")).nodeIp);
  });

  it("runs a pod of the shell image for real, and the system kubectl reads its logs and execs into it", async () => {
    const ns = await createNamespace("node-shell");
    await podOnNode(ns, "shell", {
      restartPolicy: "Always",
      containers: [
        {
          name: "sh",
          image: nodeImageName("walle-shell", await packageVersion()),
          command: ["sh", "-c", "echo started as $(id -u) in $(hostname); exec sleep 3600"],
        },
      ],
    });
    await phase(ns, "shell", "Running");
    const logs = await waitFor(async () => {
      const out = await kubectl("logs", "-n", ns, "shell");
      return out.includes("started") ? out : undefined;
    }, "the shell's first line");
    expect(logs).toBe("started as 0 in shell\n");
    expect(await kubectl("exec", "-n", ns, "shell", "--", "sh", "-c", "echo $((6 * 7)) from pid $$")).toMatch(/^42 from pid \d+\n$/);
  });

  it("execs into a running worker pod with the system kubectl, as the worker's user, and reads its logs", async () => {
    const ns = await createNamespace("node-exec");
    const security = workerSecurity(UNPRIVILEGED, JobType.Backup);
    await podOnNode(ns, "worker", {
      securityContext: security.pod,
      containers: [
        {
          name: "worker",
          image: nodeImageName("walle-worker", await packageVersion()),
          command: ["/nodejs/bin/node", "-e", "console.log('waiting'); setInterval(() => {}, 1 << 30)"],
          securityContext: security.container,
        },
      ],
    });
    await phase(ns, "worker", "Running");
    expect(
      await kubectl(
        "exec",
        "-n",
        ns,
        "worker",
        "--",
        "/nodejs/bin/node",
        "-p",
        "[process.getuid(), process.cwd(), require('fs').existsSync('/usr/bin/restic')].join(' ')",
      ),
    ).toBe(`${NONROOT} /app true\n`);
    expect(await waitFor(async () => (await kubectl("logs", "-n", ns, "worker")) || undefined, "the worker's first line")).toBe("waiting\n");
  });

  it("confines an unprivileged worker: no host filesystem, a read-only root, no capabilities, seccomp and no new privileges, in a restricted namespace", async () => {
    const ns = await createNamespace("node-worker");
    await admin().patch(`/api/v1/namespaces/${ns}`, { metadata: { labels: { "pod-security.kubernetes.io/enforce": "restricted" } } });
    const report = await workerReport(ns, "unprivileged", UNPRIVILEGED, JobType.Backup);
    expect(report).toEqual({
      uid: String(NONROOT),
      capEff: "0000000000000000",
      capBnd: "0000000000000000",
      capInh: "0000000000000000",
      capAmb: "0000000000000000",
      noNewPrivs: "1",
      seccomp: "2",
      rootWrite: "EROFS",
      seen: [],
    });
  });

  it.each([JobType.Backup, JobType.Restore])("gives a full-fidelity %s worker exactly its capabilities as root, in a baseline namespace", async (command) => {
    const ns = await createNamespace("node-privileged");
    await admin().patch(`/api/v1/namespaces/${ns}`, { metadata: { labels: { "pod-security.kubernetes.io/enforce": "baseline" } } });
    const report = await workerReport(ns, command, { privileged: true }, command);
    const caps = capMask(PRIVILEGED_CAPABILITIES[command]).toString(16).padStart(16, "0");
    expect(report).toEqual({
      uid: "0",
      capEff: caps,
      capBnd: caps,
      capInh: "0000000000000000",
      capAmb: "0000000000000000",
      noNewPrivs: "1",
      seccomp: "2",
      rootWrite: "EROFS",
      seen: [],
    });
  });

  it("publishes CSI volumes into its pods through the kubelet's own CSI calls: read-write as the pod writes, read-only where the pod says", async () => {
    const ns = await createNamespace("node-volume");
    await pvcWithData(ns, "data", { "given.txt": "from the volume\n" });
    const shell = nodeImageName("walle-shell", await packageVersion());
    await podOnNode(ns, "writer", {
      securityContext: { runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000 },
      containers: [
        {
          name: "sh",
          image: shell,
          command: ["sh", "-c", "cat /data/given.txt && echo written by the pod > /data/new.txt"],
          volumeMounts: [{ name: "data", mountPath: "/data" }],
        },
      ],
      volumes: [{ name: "data", persistentVolumeClaim: { claimName: "data" } }],
    });
    await phase(ns, "writer", "Succeeded");
    expect(await kubectl("logs", "-n", ns, "writer")).toBe("from the volume\n");
    const dir = await volumeDir(ns, "data");
    expect(await readFile(path.join(dir, "new.txt"), "utf8")).toBe("written by the pod\n");
    expect((await stat(path.join(dir, "new.txt"))).uid).toBe(1000);

    await podOnNode(ns, "reader", {
      containers: [
        {
          name: "sh",
          image: shell,
          command: ["sh", "-c", "cat /data/new.txt; touch /data/refused 2>&1; true"],
          volumeMounts: [{ name: "data", mountPath: "/data", readOnly: true }],
        },
      ],
      volumes: [{ name: "data", persistentVolumeClaim: { claimName: "data", readOnly: true } }],
    });
    await phase(ns, "reader", "Succeeded");
    expect(await kubectl("logs", "-n", ns, "reader")).toMatch(/^written by the pod\ntouch: \/data\/refused: Read-only file system\n$/);
  });

  it("lets a pod reach the API server at the kubernetes Service's address, through kube-proxy, with its service account", async () => {
    const ns = await createNamespace("node-service");
    const script = `
const fs = require("fs"), https = require("https"), dir = "/var/run/secrets/kubernetes.io/serviceaccount/";
const { KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: port } = process.env;
https.get({ host, port, path: "/api/v1/namespaces/" + fs.readFileSync(dir + "namespace", "utf8") + "/serviceaccounts/default", ca: fs.readFileSync(dir + "ca.crt"), headers: { authorization: "Bearer " + fs.readFileSync(dir + "token", "utf8") } }, (res) => {
  let body = ""; res.on("data", (c) => (body += c)); res.on("end", () => console.log(JSON.stringify({ host, port, status: res.statusCode, body: JSON.parse(body) })));
});`;
    await podOnNode(ns, "client", {
      automountServiceAccountToken: true,
      containers: [{ name: "tick", image: nodeImageName("walle-tick", await packageVersion()), command: ["/nodejs/bin/node", "-e", script] }],
    });
    await phase(ns, "client", "Succeeded");
    const seen = JSON.parse(await kubectl("logs", "-n", ns, "client")) as {
      host: string;
      port: string;
      status: number;
      body: { status?: unknown; reason?: string; message?: string };
    };
    // Reached and authenticated as the pod's service account, which RBAC gives nothing: so the API server's own 403.
    expect(seen).toMatchObject({ host: "10.0.0.1", port: "443", status: 403 });
    expect(seen.body.message).toContain(`User "system:serviceaccount:${ns}:default" cannot get resource "serviceaccounts"`);
  });

  it("backs up a PVC from the worker image into a repository on the host end of the node's link, and reports by its termination message", async () => {
    const ns = await createNamespace("node-backup");
    await pvcWithData(ns, "data", { "docs/readme.md": "# backed up on the real node\n" });
    const rest = await startRestServer({
      dataDir: await tempDir("rest-node"),
      users: { node: "rest-secret" },
      host: nodeNetwork(inject("clusterStateDir")).hostIp,
    });
    try {
      const env = { RESTIC_REPOSITORY: rest.repository("node", "rest-secret", "main"), RESTIC_PASSWORD: "pw" };
      const security = workerSecurity(UNPRIVILEGED, JobType.Backup);
      await podOnNode(ns, "backup", {
        securityContext: security.pod,
        containers: [
          {
            name: "worker",
            image: nodeImageName("walle-worker", await packageVersion()),
            args: ["backup"],
            // The repository's variables under the prefix a worker Job's envFrom gives its Secret's keys.
            env: Object.entries(
              podEnvironment(env, {
                INITIALIZE_REPO: "true",
                SOURCE_PATH: "/data",
                PVC_NAME: "data",
                PVC_NAMESPACE: ns,
                CLUSTER_NAME: "real-node",
                RESTIC_CACHE_DIR: "/cache",
              }),
            ).map(([name, value]) => ({ name, value })),
            securityContext: security.container,
            volumeMounts: [
              { name: "data", mountPath: "/data", readOnly: true },
              { name: "tmp", mountPath: "/tmp" },
              { name: "cache", mountPath: "/cache" },
            ],
          },
        ],
        volumes: [
          { name: "data", persistentVolumeClaim: { claimName: "data", readOnly: true } },
          { name: "tmp", emptyDir: {} },
          { name: "cache", emptyDir: {} },
        ],
      });
      const pod = await phase(ns, "backup", "Succeeded");
      const message = pod.status?.containerStatuses?.[0]?.state?.terminated?.message ?? "";
      const [snapshot] = await listSnapshots(env);
      expect(snapshot?.hostname).toBe("real-node");
      expect(snapshot?.tags).toEqual(expect.arrayContaining(["pvc=data", `namespace=${ns}`]));
      expect(message).toContain(`"snapshotId":"${snapshot?.id}"`);
    } finally {
      await rest.stop();
    }
  });
});

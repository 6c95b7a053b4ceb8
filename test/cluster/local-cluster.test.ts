// The local cluster itself: a real kube-apiserver and kube-controller-manager, the real CSI snapshot-controller,
// csi-snapshotter and csi-provisioner against the node agent's CSI driver, and a real node (kubelet, containerd,
// runc), with only the driver's storage simulated. Each test shows one thing the rest of Walle relies on.
import { execFile } from "node:child_process";
import { chmod, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import { existsSync } from "node:fs";
import path from "node:path";
import { describe, expect, inject, it } from "vitest";
import { boundVolumeDir } from "../../cluster/csi.ts";
import { ApiError } from "../../lib/k8s/rest.ts";
import { admin, clientForServiceAccount, clientForUser, createNamespace, grantRole, waitFor } from "../support/kube.ts";

const SNAP = "/apis/snapshot.storage.k8s.io/v1";
const run = promisify(execFile);
// The local registry's busybox stand-in (cluster/node.ts registryNames): Walle's worker image has no shell to run
// these scripts.
const SHELL_IMAGE = "busybox:1.36";

interface Named {
  metadata: { name: string; namespace?: string; uid?: string; annotations?: Record<string, string> };
}
interface PvcObj extends Named {
  spec: { volumeName?: string };
  status?: { phase?: string };
}
interface SnapshotObj extends Named {
  status?: { readyToUse?: boolean; boundVolumeSnapshotContentName?: string; restoreSize?: string; error?: { message?: string } };
}
interface ContentObj extends Named {
  spec: { deletionPolicy: string; driver: string; volumeSnapshotClassName?: string };
  status?: { snapshotHandle?: string; readyToUse?: boolean };
}
interface JobObj extends Named {
  status?: { conditions?: { type: string; status: string; reason?: string }[]; succeeded?: number; failed?: number };
}
interface PodObj extends Named {
  status?: { phase?: string; containerStatuses?: { state: { terminated?: { exitCode: number; message?: string } } }[] };
}

const stateDir = () => inject("clusterStateDir");
/** The directory behind a bound PVC: its PV's volume handle, as the CSI driver named it. */
const volumeDir = (pvc: PvcObj) =>
  waitFor(() => boundVolumeDir(admin(), stateDir(), pvc.metadata.namespace ?? "", pvc.metadata.name), `directory of ${pvc.metadata.name}`);

async function createPvc(ns: string, name: string, dataSource?: { kind: string; name: string; apiGroup?: string }): Promise<PvcObj> {
  await admin().create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name },
    spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } }, ...(dataSource ? { dataSource } : {}) },
  });
  return waitFor(async () => {
    const pvc = await admin().get<PvcObj>(`/api/v1/namespaces/${ns}/persistentvolumeclaims/${name}`);
    return pvc.status?.phase === "Bound" ? pvc : undefined;
  }, `PVC ${ns}/${name} Bound`);
}

async function snapshot(ns: string, name: string, source: Record<string, string>): Promise<SnapshotObj> {
  await admin().create(`${SNAP}/namespaces/${ns}/volumesnapshots`, {
    apiVersion: "snapshot.storage.k8s.io/v1",
    kind: "VolumeSnapshot",
    metadata: { name },
    spec: { source },
  });
  return waitFor(async () => {
    const vs = await admin().get<SnapshotObj>(`${SNAP}/namespaces/${ns}/volumesnapshots/${name}`);
    return vs.status?.readyToUse ? vs : undefined;
  }, `VolumeSnapshot ${ns}/${name} readyToUse`);
}

/** Runs a Job of a shell script and returns it once the job controller has marked it Complete or Failed. */
async function runJob(
  ns: string,
  name: string,
  script: string,
  extra: { volumes?: unknown[]; volumeMounts?: unknown[]; env?: unknown[]; envFrom?: unknown[]; securityContext?: unknown } = {},
) {
  await admin().create(`/apis/batch/v1/namespaces/${ns}/jobs`, {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name },
    spec: {
      backoffLimit: 0,
      template: {
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          volumes: extra.volumes ?? [],
          containers: [
            {
              name: "worker",
              image: SHELL_IMAGE,
              command: ["/bin/sh", "-c", script],
              env: extra.env ?? [],
              envFrom: extra.envFrom ?? [],
              volumeMounts: extra.volumeMounts ?? [],
              securityContext: extra.securityContext ?? {
                allowPrivilegeEscalation: false,
                capabilities: { drop: ["ALL"] },
                runAsNonRoot: true,
                runAsUser: 65532,
              },
            },
          ],
        },
      },
    },
  });
  const job = await waitFor(async () => {
    const j = await admin().get<JobObj>(`/apis/batch/v1/namespaces/${ns}/jobs/${name}`);
    return j.status?.conditions?.some((c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True") ? j : undefined;
  }, `Job ${ns}/${name} to finish`);
  const pods = await admin().get<{ items: PodObj[] }>(`/api/v1/namespaces/${ns}/pods`, { labelSelector: `job-name=${name}` });
  const pod = pods.items[0];
  return { job, pod, terminated: pod?.status?.containerStatuses?.[0]?.state.terminated };
}

const condition = (job: JobObj, type: string) => job.status?.conditions?.find((c) => c.type === type)?.status;

describe("the local cluster", () => {
  it("is a real kube-apiserver v1.36 that serves the upstream CRDs", async () => {
    const version = await admin().get<{ gitVersion: string; major: string; minor: string }>("/version");
    expect(version.gitVersion).toMatch(/^v1\.36\.\d+$/);
    expect(version.minor).toBe("36");
    const served = async (gv: string) => (await admin().get<{ resources: { name: string }[] }>(`/apis/${gv}`)).resources.map((r) => r.name);
    expect(await served("snapshot.storage.k8s.io/v1")).toEqual(expect.arrayContaining(["volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses"]));
    expect(await served("keda.sh/v1alpha1")).toEqual(expect.arrayContaining(["scaledjobs", "scaledobjects"]));
    expect(await served("serving.knative.dev/v1")).toEqual(expect.arrayContaining(["services"]));
    expect(await served("sources.knative.dev/v1")).toEqual(expect.arrayContaining(["apiserversources", "pingsources"]));

    // The schemas are the upstream ones: a ScaledJob with a cron trigger is accepted as written.
    const ns = await createNamespace("crds");
    const created = await admin().create<Named>(`/apis/keda.sh/v1alpha1/namespaces/${ns}/scaledjobs`, {
      apiVersion: "keda.sh/v1alpha1",
      kind: "ScaledJob",
      metadata: { name: "tick" },
      spec: {
        jobTargetRef: { template: { spec: { containers: [{ name: "tick", image: "walle-tick" }], restartPolicy: "Never" } } },
        triggers: [{ type: "cron", metadata: { timezone: "Etc/UTC", start: "*/5 * * * *", end: "1-59/5 * * * *", desiredReplicas: "1" } }],
      },
    });
    expect(created.metadata.uid).toBeTruthy();
  });

  it("binds a PVC to a directory that holds what a pod writes", async () => {
    const ns = await createNamespace("pvc");
    const pvc = await createPvc(ns, "data");
    expect(pvc.spec.volumeName).toBeTruthy();
    const { job, terminated } = await runJob(ns, "writer", "echo hello > /data/greeting && cat /data/greeting > /dev/termination-log", {
      volumes: [{ name: "data", persistentVolumeClaim: { claimName: "data" } }],
      volumeMounts: [{ name: "data", mountPath: "/data" }],
    });
    expect(condition(job, "Complete")).toBe("True");
    expect(terminated?.message).toBe("hello\n");
    expect(await readFile(path.join(await volumeDir(pvc), "greeting"), "utf8")).toBe("hello\n");
  });

  it("takes a snapshot that a new PVC restores as it was at snapshot time", async () => {
    const ns = await createNamespace("snap");
    const pvc = await createPvc(ns, "source");
    const dir = await volumeDir(pvc);
    await mkdir(path.join(dir, "sub"), { recursive: true });
    await writeFile(path.join(dir, "sub", "file.txt"), "version 1");
    const vs = await snapshot(ns, "snap-1", { persistentVolumeClaimName: "source" });
    expect(vs.status?.boundVolumeSnapshotContentName).toBeTruthy();
    // The driver reports the size a volume made from the snapshot needs: its source's capacity, as csi-hostpath does.
    expect(vs.status?.restoreSize).toBe("1Gi");
    await writeFile(path.join(dir, "sub", "file.txt"), "version 2, written after the snapshot");
    await writeFile(path.join(dir, "later.txt"), "later");

    const restored = await createPvc(ns, "restored", { apiGroup: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: "snap-1" });
    const rdir = await volumeDir(restored);
    expect(await readFile(path.join(rdir, "sub", "file.txt"), "utf8")).toBe("version 1");
    expect(existsSync(path.join(rdir, "later.txt"))).toBe(false);
  });

  it("reports a snapshot error when the driver fails", async () => {
    const ns = await createNamespace("snaperr");
    await createPvc(ns, "source");
    await admin().create(`${SNAP}/namespaces/${ns}/volumesnapshots`, {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshot",
      metadata: { name: "broken", annotations: { "local.walle.dev/snapshot-error": "storage backend is out of space" } },
      spec: { source: { persistentVolumeClaimName: "source" } },
    });
    const vs = await waitFor(async () => {
      const s = await admin().get<SnapshotObj>(`${SNAP}/namespaces/${ns}/volumesnapshots/broken`);
      return s.status?.error ? s : undefined;
    }, "snapshot error");
    expect(vs.status?.readyToUse).toBe(false);
    // csi-snapshotter wraps the driver's gRPC error in its own words; the driver's message is in it.
    expect(vs.status?.error?.message).toContain("storage backend is out of space");
  });

  it("restores the same data in another namespace from a pre-provisioned content, honouring both deletion policies", async () => {
    const a = await createNamespace("tenant");
    const b = await createNamespace("backup");
    const pvc = await createPvc(a, "app");
    await writeFile(path.join(await volumeDir(pvc), "db.sqlite"), "rows 1..42");
    const original = await snapshot(a, "app-snap", { persistentVolumeClaimName: "app" });
    const origContentName = original.status?.boundVolumeSnapshotContentName ?? "";
    const origContent = await admin().get<ContentObj>(`${SNAP}/volumesnapshotcontents/${origContentName}`);
    const handle = origContent.status?.snapshotHandle ?? "";
    expect(handle).toBeTruthy();

    // docs/architecture.md, Security: a new content in the other namespace names the same storage snapshot by its handle.
    await admin().create(`${SNAP}/volumesnapshotcontents`, {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshotContent",
      metadata: { name: `moved-${a}` },
      spec: {
        driver: origContent.spec.driver,
        deletionPolicy: "Delete",
        volumeSnapshotClassName: origContent.spec.volumeSnapshotClassName,
        source: { snapshotHandle: handle },
        volumeSnapshotRef: { name: "moved", namespace: b },
      },
    });
    await snapshot(b, "moved", { volumeSnapshotContentName: `moved-${a}` });
    // Retain on the original, then delete it: the storage snapshot survives, owned by the new pair only.
    await admin().patch(`${SNAP}/volumesnapshotcontents/${origContentName}`, { spec: { deletionPolicy: "Retain" } });
    await admin().delete(`${SNAP}/namespaces/${a}/volumesnapshots/app-snap`);
    await admin().delete(`${SNAP}/volumesnapshotcontents/${origContentName}`);
    await waitFor(
      async () =>
        admin()
          .get(`${SNAP}/volumesnapshotcontents/${origContentName}`)
          .then(
            () => false,
            () => true,
          ),
      "original content gone",
    );
    expect(existsSync(path.join(stateDir(), "snapshots", handle))).toBe(true);

    const restored = await createPvc(b, "copy", { apiGroup: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: "moved" });
    expect(await readFile(path.join(await volumeDir(restored), "db.sqlite"), "utf8")).toBe("rows 1..42");

    // Delete policy: deleting the snapshot removes its content and the storage snapshot.
    await admin().delete(`${SNAP}/namespaces/${b}/volumesnapshots/moved`);
    await waitFor(
      async () =>
        admin()
          .get(`${SNAP}/volumesnapshotcontents/moved-${a}`)
          .then(
            () => false,
            () => true,
          ),
      "moved content deleted",
    );
    await waitFor(async () => !existsSync(path.join(stateDir(), "snapshots", handle)), "storage snapshot deleted");
  });

  it("judges a pre-provisioned content by the driver's own record: a handle the storage does not hold never becomes ready", async () => {
    const ns = await createNamespace("forged");
    await admin().create(`${SNAP}/volumesnapshotcontents`, {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshotContent",
      metadata: { name: `forged-${ns}` },
      spec: {
        driver: "hostpath.csi.walle.local",
        deletionPolicy: "Retain",
        source: { snapshotHandle: "snap-that-never-was" },
        volumeSnapshotRef: { name: "forged", namespace: ns },
      },
    });
    await admin().create(`${SNAP}/namespaces/${ns}/volumesnapshots`, {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshot",
      metadata: { name: "forged" },
      spec: { source: { volumeSnapshotContentName: `forged-${ns}` } },
    });
    // csi-snapshotter asks the driver (ListSnapshots) and records its answer on the content; the snapshot says so too.
    const content = await waitFor(async () => {
      const c = await admin().get<ContentObj & { status?: { error?: { message?: string } } }>(`${SNAP}/volumesnapshotcontents/forged-${ns}`);
      return c.status?.error ? c : undefined;
    }, "the forged content's error");
    expect(content.status?.error?.message).toContain("snap-that-never-was");
    expect(content.status?.readyToUse).not.toBe(true);
    const vs = await admin().get<SnapshotObj>(`${SNAP}/namespaces/${ns}/volumesnapshots/forged`);
    expect(vs.status?.readyToUse).not.toBe(true);
    await admin().delete(`${SNAP}/namespaces/${ns}/volumesnapshots/forged`);
    await admin().delete(`${SNAP}/volumesnapshotcontents/forged-${ns}`);
  });

  it("starts a CSI sidecar again when it dies, as a kubelet restarts a container: a PVC made meanwhile is still provisioned", async () => {
    // The csi-provisioner of this cluster: its command line names the cluster's CSI socket.
    const socket = path.join(stateDir(), "csi", "csi.sock");
    const provisioners = async () => {
      const { stdout } = await run("pgrep", ["-f", `csi-provisioner .*--csi-address=${socket}`]).catch(() => ({ stdout: "" }));
      return stdout.split("\n").filter(Boolean).map(Number);
    };
    const [before] = await provisioners();
    expect(before).toBeGreaterThan(0);
    process.kill(before ?? 0, "SIGKILL");
    const ns = await createNamespace("restart");
    const pvc = await createPvc(ns, "after-crash");
    expect(pvc.status?.phase).toBe("Bound");
    const after = await provisioners();
    expect(after).toHaveLength(1);
    expect(after[0]).not.toBe(before);
  });

  it("runs a Job as a non-root process with the pod's environment, and the job controller completes it", async () => {
    const ns = await createNamespace("job");
    await admin().create(`/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "repo" },
      stringData: { RESTIC_REPOSITORY: "rest:http://127.0.0.1:1/repo", RESTIC_PASSWORD: "s3cret" },
    });
    const { job, pod, terminated } = await runJob(
      ns,
      "env",
      'echo "hello from the worker"; printf "%s|%s|%s|%s" "$(id -u)" "$RESTIC_REPOSITORY" "$PASSWORD" "$POD_NS" > /dev/termination-log',
      {
        envFrom: [{ secretRef: { name: "repo" } }],
        env: [
          { name: "PASSWORD", valueFrom: { secretKeyRef: { name: "repo", key: "RESTIC_PASSWORD" } } },
          { name: "POD_NS", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
        ],
      },
    );
    expect(condition(job, "Complete")).toBe("True");
    const [uid, repo, password, podNs] = (terminated?.message ?? "").split("|");
    expect(uid).toBe("65532");
    expect(repo).toBe("rest:http://127.0.0.1:1/repo");
    expect(password).toBe("s3cret");
    expect(podNs).toBe(ns);
    // The API server proxies pods/log to the node's kubelet.
    const log = await admin()
      .request<string>("GET", `/api/v1/namespaces/${ns}/pods/${pod?.metadata.name}/log`, { accept: "*/*" })
      .catch((e: unknown) => e);
    expect(log).toBe("hello from the worker\n");
  });

  it("names Services in pods by cluster DNS (CoreDNS), and routes one to the pods its selector picks", async () => {
    const ns = await createNamespace("dns");
    const nonRoot = { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, runAsNonRoot: true, runAsUser: 65532 };
    await admin().create(`/api/v1/namespaces/${ns}/pods`, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "web", labels: { app: "web" } },
      spec: {
        automountServiceAccountToken: false,
        containers: [
          {
            name: "web",
            image: SHELL_IMAGE,
            command: ["/bin/sh", "-c", 'mkdir -p /tmp/www && echo "served by $(hostname)" > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www'],
            readinessProbe: { tcpSocket: { port: 8080 } },
            securityContext: nonRoot,
          },
        ],
      },
    });
    await admin().create(`/api/v1/namespaces/${ns}/services`, {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web" },
      spec: { selector: { app: "web" }, ports: [{ port: 80, targetPort: 8080 }] },
    });
    // The endpointslice controller gives the Service its ready pod.
    await waitFor(
      async () => {
        const slices = await admin().get<{ items: { endpoints?: { conditions?: { ready?: boolean } }[] }[] }>(
          `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`,
          { labelSelector: "kubernetes.io/service-name=web" },
        );
        return slices.items.some((s) => s.endpoints?.some((e) => e.conditions?.ready));
      },
      "a ready endpoint of Service web",
      60_000,
    );
    const service = await admin().get<{ spec: { clusterIP: string } }>(`/api/v1/namespaces/${ns}/services/web`);
    const kubernetes = await admin().get<{ spec: { clusterIP: string } }>("/api/v1/namespaces/default/services/kubernetes");
    // busybox's nslookup asks the pod's nameserver itself; wget then goes to the address it answered.
    const { job, terminated } = await runJob(
      ns,
      "client",
      [
        `web=$(nslookup web.${ns}.svc.cluster.local | awk '/^Address: /{print $2}')`,
        "api=$(nslookup kubernetes.default.svc.cluster.local | awk '/^Address: /{print $2}')",
        'printf "%s|%s|%s" "$web" "$api" "$(wget -qO- "http://$web/" 2>&1)" > /dev/termination-log',
      ].join("\n"),
    );
    expect(condition(job, "Complete")).toBe("True");
    expect((terminated?.message ?? "").split("|")).toEqual([service.spec.clusterIP, kubernetes.spec.clusterIP, "served by web"]);
  });

  it("gives a container exactly the capabilities of its security context, as runc does", async () => {
    const ns = await createNamespace("caps");
    const capEff = "grep '^CapEff' /proc/self/status | cut -f2 > /dev/termination-log";
    // Root with every capability dropped but DAC_OVERRIDE (bit 1) holds that one alone.
    const root = await runJob(ns, "root-dac", capEff, {
      securityContext: { runAsUser: 0, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"], add: ["DAC_OVERRIDE"] } },
    });
    expect(root.terminated?.message?.trim()).toBe("0000000000000002");
    // CHOWN (0), DAC_OVERRIDE (1), FOWNER (3), FSETID (4), MKNOD (27), SETFCAP (31).
    const restore = await runJob(ns, "root-restore", capEff, {
      securityContext: { runAsUser: 0, capabilities: { drop: ["ALL"], add: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD", "SETFCAP"] } },
    });
    expect(restore.terminated?.message?.trim()).toBe((2 ** 0 + 2 ** 1 + 2 ** 3 + 2 ** 4 + 2 ** 27 + 2 ** 31).toString(16).padStart(16, "0"));
    // A non-root process keeps none across exec, whatever it was given: nothing is ambient.
    const user = await runJob(ns, "user-dac", capEff, { securityContext: { runAsUser: 65532, capabilities: { drop: ["ALL"], add: ["DAC_OVERRIDE"] } } });
    expect(user.terminated?.message?.trim()).toBe("0000000000000000");
  });

  it("ends a Job past its activeDeadlineSeconds: the job controller deletes the pod and the node stops it", async () => {
    const ns = await createNamespace("deadline");
    await admin().create(`/apis/batch/v1/namespaces/${ns}/jobs`, {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: { name: "stuck" },
      spec: {
        backoffLimit: 0,
        activeDeadlineSeconds: 2,
        // busybox's sleep as PID 1 ignores SIGTERM: the kubelet kills it when the grace period ends.
        template: {
          spec: { restartPolicy: "Never", terminationGracePeriodSeconds: 2, containers: [{ name: "w", image: SHELL_IMAGE, command: ["sleep", "600"] }] },
        },
      },
    });
    const job = await waitFor(
      async () => {
        const j = await admin().get<JobObj>(`/apis/batch/v1/namespaces/${ns}/jobs/stuck`);
        return j.status?.conditions?.find((c) => c.type === "Failed" && c.status === "True");
      },
      "Job Failed",
      30_000,
    );
    expect(job.reason).toBe("DeadlineExceeded");
    await waitFor(async () => (await admin().get<{ items: unknown[] }>(`/api/v1/namespaces/${ns}/pods`)).items.length === 0, "pod stopped and removed", 30_000);
  });

  it("marks a Job failed on a non-zero exit, with the termination message readable", async () => {
    const ns = await createNamespace("jobfail");
    const { job, pod, terminated } = await runJob(ns, "fails", 'echo "wrong password or no key found" > /dev/termination-log; exit 12');
    expect(condition(job, "Failed")).toBe("True");
    expect(job.status?.failed).toBe(1);
    expect(pod?.status?.phase).toBe("Failed");
    expect(terminated?.exitCode).toBe(12);
    expect(terminated?.message).toBe("wrong password or no key found\n");
  });

  it("keeps a pod waiting with a clear reason when its Secret is missing", async () => {
    const ns = await createNamespace("nosecret");
    await admin().create(`/api/v1/namespaces/${ns}/pods`, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "p" },
      spec: { restartPolicy: "Never", containers: [{ name: "c", image: SHELL_IMAGE, command: ["true"], envFrom: [{ secretRef: { name: "absent" } }] }] },
    });
    const waiting = await waitFor(async () => {
      const p = await admin().get<{ status?: { containerStatuses?: { state: { waiting?: { reason: string; message?: string } } }[] } }>(
        `/api/v1/namespaces/${ns}/pods/p`,
      );
      const waiting = p.status?.containerStatuses?.[0]?.state.waiting;
      // ContainerCreating until the kubelet has tried to make the container's config.
      return waiting?.reason === "ContainerCreating" ? undefined : waiting;
    }, "pod waiting, past ContainerCreating");
    expect(waiting).toEqual({ reason: "CreateContainerConfigError", message: 'secret "absent" not found' });
  });

  it("mounts a volume read-only where the pod says so", async () => {
    const ns = await createNamespace("ro");
    const pvc = await createPvc(ns, "data");
    // World-writable, so only the mount can stop the (non-root) worker from changing it.
    await writeFile(path.join(await volumeDir(pvc), "keep.txt"), "original");
    await chmod(path.join(await volumeDir(pvc), "keep.txt"), 0o666);
    const script =
      "if echo changed > /data/keep.txt 2>/dev/null; then echo writable; else echo read-only; fi > /dev/termination-log; cat /data/keep.txt >> /dev/termination-log";
    const ro = await runJob(ns, "ro", script, {
      volumes: [{ name: "data", persistentVolumeClaim: { claimName: "data", readOnly: true } }],
      volumeMounts: [{ name: "data", mountPath: "/data", readOnly: true }],
    });
    expect(ro.terminated?.message).toBe("read-only\noriginal");
    expect(await readFile(path.join(await volumeDir(pvc), "keep.txt"), "utf8")).toBe("original");
    // The same mount without readOnly is writable, so the first result is the mount's doing.
    const rw = await runJob(ns, "rw", script, {
      volumes: [{ name: "data", persistentVolumeClaim: { claimName: "data" } }],
      volumeMounts: [{ name: "data", mountPath: "/data" }],
    });
    expect(rw.terminated?.message).toBe("writable\nchanged\n");
  });

  it("garbage-collects children when their owner is deleted", async () => {
    const ns = await createNamespace("gc");
    const owner = await admin().create<Named>(`/api/v1/namespaces/${ns}/configmaps`, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "owner" } });
    await admin().create(`/api/v1/namespaces/${ns}/configmaps`, {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "child", ownerReferences: [{ apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: owner.metadata.uid, controller: true }] },
    });
    const { job } = await runJob(ns, "done", "true");
    await admin().delete(`/api/v1/namespaces/${ns}/configmaps/owner`);
    await admin().delete(`/apis/batch/v1/namespaces/${ns}/jobs/done`, { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Background" });
    await waitFor(
      () =>
        admin()
          .get(`/api/v1/namespaces/${ns}/configmaps/child`)
          .then(
            () => false,
            (e: unknown) => e instanceof ApiError && e.code === 404,
          ),
      "child ConfigMap collected",
    );
    await waitFor(
      async () => (await admin().get<{ items: unknown[] }>(`/api/v1/namespaces/${ns}/pods`, { labelSelector: `job-name=done` })).items.length === 0,
      "Job's pod collected",
    );
    expect(job.metadata.name).toBe("done");
  });

  it("denies a service account and a user what their RBAC does not grant", async () => {
    const ns = await createNamespace("rbac");
    await admin().create(`/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "reader" } });
    await grantRole(
      ns,
      "configmap-reader",
      [{ apiGroups: [""], resources: ["configmaps"], verbs: ["get", "list"] }],
      [
        { kind: "ServiceAccount", name: "reader", namespace: ns },
        { kind: "User", apiGroup: "rbac.authorization.k8s.io", name: "alice" },
      ],
    );
    const sa = await clientForServiceAccount(ns, "reader");
    const alice = await clientForUser("alice", ["tenants"]);
    for (const client of [sa, alice]) {
      const list = await client.get<{ items: unknown[] }>(`/api/v1/namespaces/${ns}/configmaps`);
      expect(Array.isArray(list.items)).toBe(true);
      const denied = await client.get(`/api/v1/namespaces/${ns}/secrets`).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(denied).toBeInstanceOf(ApiError);
      expect((denied as ApiError).code).toBe(403);
      expect((denied as ApiError).message).toMatch(/cannot list resource "secrets"/);
      const write = await client.create(`/api/v1/namespaces/${ns}/configmaps`, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "x" } }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((write as ApiError).code).toBe(403);
    }
    // The identity the API server saw is the one the credentials carry.
    const review = await alice.create<{ status: { userInfo: { username: string; groups: string[] } } }>("/apis/authentication.k8s.io/v1/selfsubjectreviews", {
      apiVersion: "authentication.k8s.io/v1",
      kind: "SelfSubjectReview",
    });
    expect(review.status.userInfo.username).toBe("alice");
    expect(review.status.userInfo.groups).toContain("tenants");
    expect(await readdir(path.join(stateDir(), "kubeconfigs"))).not.toHaveLength(0);
  });
});

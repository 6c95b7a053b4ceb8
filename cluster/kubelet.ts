// The local kubelet (and scheduler): binds pending pods to the one local Node and runs the containers of
// images it knows as local processes. Each container gets the pod's environment, resolved as kubelet resolves
// it, its own mount namespace with the pod's volumes bind-mounted at their mountPaths (read-only where the pod
// says so), the user, groups and capabilities of its security context (as runc sets them), and a termination-message file.
// Pods of other images only show Running.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { chmod, chown, lstat, mkdir, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { isNotFound, type RestClient } from "../lib/k8s/rest.ts";
import type { Informer } from "../lib/k8s/informer.ts";
import { nowIso, type PvcVolumes } from "./csi.ts";
import type { ConfigMap, Container, ContainerState, ContainerStatus, EnvVar, KeyToPath, Named, Pod, Secret, SecurityContext, Volume } from "../lib/api/kube.ts";

export const NODE_NAME = "walle-local-node";

/** How a known image runs here: its entrypoint, PATH and default user, as its Dockerfile would set them. */
export interface LocalImage {
  readonly entrypoint: readonly string[];
  readonly path: readonly string[];
  /** The image config's Env, which the container's own env overrides. */
  readonly env?: Readonly<Record<string, string>>;
  readonly user?: number;
  readonly group?: number;
  readonly workingDir?: string;
}

export type ImageResolver = (image: string) => LocalImage | undefined;

interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
  file?: boolean;
}

interface RunningPod {
  uid: string;
  children: Map<string, ChildProcess>;
  statuses: Map<string, ContainerStatus>;
  done: boolean;
  killed?: string;
}

const TERMINATION_LIMIT = 4096;

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Kubernetes' $(VAR) expansion in command, args and env values; $$ escapes a dollar. */
export function expand(text: string, env: Readonly<Record<string, string>>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) =>
    m === "$$" ? "$" : name !== undefined && name in env ? (env[name] ?? "") : m,
  );
}

class ConfigError extends Error {}

export class LocalKubelet {
  private readonly running = new Map<string, RunningPod>();
  private readonly starting = new Set<string>();

  private readonly api: RestClient;
  private readonly pods: Informer<Named<Pod>>;
  private readonly volumes: PvcVolumes;
  private readonly stateDir: string;
  private readonly images: ImageResolver;
  private readonly apiserver: { host: string; port: string };
  private readonly log: (msg: string, extra?: Record<string, unknown>) => void;
  private readonly kick: () => void;

  constructor(o: {
    api: RestClient;
    pods: Informer<Named<Pod>>;
    volumes: PvcVolumes;
    stateDir: string;
    images: ImageResolver;
    apiserver: { host: string; port: string };
    log: (msg: string, extra?: Record<string, unknown>) => void;
    kick: () => void;
  }) {
    this.api = o.api;
    this.pods = o.pods;
    this.volumes = o.volumes;
    this.stateDir = o.stateDir;
    this.images = o.images;
    this.apiserver = o.apiserver;
    this.log = o.log;
    this.kick = o.kick;
  }

  private podDir(pod: Named<Pod>): string {
    return path.join(this.stateDir, "pods", `${pod.metadata.namespace}_${pod.metadata.name}_${pod.metadata.uid}`);
  }

  async reconcile(): Promise<void> {
    for (const pod of this.pods.list()) {
      try {
        await this.reconcilePod(pod);
      } catch (err) {
        this.log("pod step failed", { pod: `${pod.metadata.namespace}/${pod.metadata.name}`, err: String(err) });
      }
    }
  }

  private async reconcilePod(pod: Named<Pod>): Promise<void> {
    const uid = pod.metadata.uid ?? "";
    if (!pod.spec.nodeName) {
      if (pod.metadata.deletionTimestamp) return;
      // The scheduler's one decision here: the only node.
      await this.api.create(`/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/binding`, {
        apiVersion: "v1",
        kind: "Binding",
        metadata: { name: pod.metadata.name, uid },
        target: { apiVersion: "v1", kind: "Node", name: NODE_NAME },
      });
      return;
    }
    if (pod.spec.nodeName !== NODE_NAME) return;
    if (pod.metadata.deletionTimestamp) return this.terminate(pod);
    const phase = pod.status?.phase ?? "Pending";
    if (phase === "Succeeded" || phase === "Failed") return;
    const run = this.running.get(uid);
    if (run) return this.enforceDeadline(pod, run);
    if (this.starting.has(uid)) return;
    this.starting.add(uid);
    try {
      await this.start(pod);
    } finally {
      this.starting.delete(uid);
    }
  }

  private async enforceDeadline(pod: Named<Pod>, run: RunningPod): Promise<void> {
    const deadline = pod.spec.activeDeadlineSeconds;
    const started = pod.status?.startTime;
    if (!deadline || !started || run.done || run.killed) return;
    if (Date.now() - Date.parse(started) < deadline * 1000) return;
    run.killed = "DeadlineExceeded";
    for (const child of run.children.values()) this.signal(child, "SIGTERM");
    this.log("Pod exceeded its active deadline", { pod: `${pod.metadata.namespace}/${pod.metadata.name}` });
  }

  private signal(child: ChildProcess, sig: NodeJS.Signals): void {
    try {
      if (child.pid) process.kill(-child.pid, sig);
    } catch {
      /* already gone */
    }
  }

  /** Graceful deletion: stop the containers, record a terminal phase, then remove the pod object. */
  private async terminate(pod: Named<Pod>): Promise<void> {
    const uid = pod.metadata.uid ?? "";
    const run = this.running.get(uid);
    // A pod of another image runs nothing here: there is nothing to stop.
    if (run && run.children.size === 0 && !run.done && !this.images(pod.spec.containers[0]?.image ?? "")) run.done = true;
    if (run && !run.done) {
      if (!run.killed) {
        run.killed = "Terminated";
        const grace = (pod.spec.terminationGracePeriodSeconds ?? 30) * 1000;
        for (const child of run.children.values()) {
          this.signal(child, "SIGTERM");
          setTimeout(() => this.signal(child, "SIGKILL"), grace).unref();
        }
      }
      return; // the exit handler kicks another pass
    }
    const phase = pod.status?.phase;
    if (phase !== "Succeeded" && phase !== "Failed" && pod.metadata.finalizers?.length) {
      await this.patchStatus(pod, { phase: "Failed", reason: "Terminated", message: "Pod was deleted" });
    }
    await this.api
      .delete(`/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`, {
        apiVersion: "v1",
        kind: "DeleteOptions",
        gracePeriodSeconds: 0,
        preconditions: { uid },
      })
      .catch((e: unknown) => {
        if (!isNotFound(e) && !(e instanceof Error && "code" in e && e.code === 409)) throw e;
      });
    this.running.delete(uid);
    await rm(this.podDir(pod), { recursive: true, force: true });
  }

  private patchStatus(pod: Named<Pod>, status: NonNullable<Pod["status"]>): Promise<unknown> {
    return this.api.patch(`/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/status`, { status }, "strategic");
  }

  private async waiting(pod: Named<Pod>, reason: string, message: string): Promise<void> {
    const current = pod.status?.containerStatuses?.[0]?.state?.waiting;
    if (current?.reason === reason && current.message === message) return;
    await this.patchStatus(pod, {
      phase: "Pending",
      containerStatuses: pod.spec.containers.map((c) => ({
        name: c.name, image: c.image ?? "", imageID: "", ready: false, restartCount: 0, state: { waiting: { reason, message } },
      })),
    });
  }

  private async readObject(kind: "secrets" | "configmaps", namespace: string, name: string | undefined, optional: boolean): Promise<Record<string, string> | undefined> {
    // The API server's validation requires the name of every Secret and ConfigMap reference a pod makes.
    if (!name) throw new ConfigError(`${kind === "secrets" ? "secret" : "configmap"} reference without a name`);
    try {
      const obj = await this.api.get<Secret | ConfigMap>(`/api/v1/namespaces/${namespace}/${kind}/${name}`);
      const data = obj.data ?? {};
      return kind === "secrets"
        ? Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]))
        : data;
    } catch (e) {
      if (isNotFound(e)) {
        if (optional) return undefined;
        throw new ConfigError(`${kind === "secrets" ? "secret" : "configmap"} "${name}" not found`);
      }
      throw e;
    }
  }

  private fieldValue(pod: Named<Pod>, fieldPath: string): string {
    const labelOrAnnotation = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
    if (labelOrAnnotation) return pod.metadata[labelOrAnnotation[1] as "labels" | "annotations"]?.[labelOrAnnotation[2] ?? ""] ?? "";
    const fields: Record<string, string | undefined> = {
      "metadata.name": pod.metadata.name,
      "metadata.namespace": pod.metadata.namespace,
      "metadata.uid": pod.metadata.uid,
      "spec.nodeName": pod.spec.nodeName,
      "spec.serviceAccountName": pod.spec.serviceAccountName,
      "status.podIP": "127.0.0.1",
      "status.hostIP": "127.0.0.1",
    };
    if (!(fieldPath in fields)) throw new ConfigError(`unsupported fieldRef ${fieldPath}`);
    return fields[fieldPath] ?? "";
  }

  /** The container's environment, in kubelet's order: envFrom sources, then env, with $(VAR) expansion. */
  private async environment(pod: Named<Pod>, c: Container, image: LocalImage): Promise<Record<string, string>> {
    const ns = pod.metadata.namespace ?? "default";
    const env: Record<string, string> = {
      ...image.env,
      PATH: image.path.join(":"),
      HOSTNAME: pod.metadata.name,
      KUBERNETES_SERVICE_HOST: this.apiserver.host,
      KUBERNETES_SERVICE_PORT: this.apiserver.port,
      KUBERNETES_SERVICE_PORT_HTTPS: this.apiserver.port,
    };
    for (const from of c.envFrom ?? []) {
      const ref = from.secretRef ?? from.configMapRef;
      if (!ref) continue;
      const data = await this.readObject(from.secretRef ? "secrets" : "configmaps", ns, ref.name, ref.optional === true);
      for (const [k, v] of Object.entries(data ?? {})) env[`${from.prefix ?? ""}${k}`] = v;
    }
    for (const v of c.env ?? []) {
      const value = await this.envValue(pod, ns, v, env);
      if (value !== undefined) env[v.name] = value;
    }
    return env;
  }

  private async envValue(pod: Named<Pod>, ns: string, v: EnvVar, env: Record<string, string>): Promise<string | undefined> {
    if (v.value !== undefined) return expand(v.value, env);
    const from = v.valueFrom;
    if (!from) return "";
    if (from.fieldRef) return this.fieldValue(pod, from.fieldRef.fieldPath);
    const ref = from.secretKeyRef ?? from.configMapKeyRef;
    if (!ref) return "";
    const kind = from.secretKeyRef ? "secrets" : "configmaps";
    const data = await this.readObject(kind, ns, ref.name, ref.optional === true);
    if (data === undefined) return undefined;
    if (!(ref.key in data)) {
      if (ref.optional) return undefined;
      throw new ConfigError(`couldn't find key ${ref.key} in ${kind === "secrets" ? "Secret" : "ConfigMap"} ${ns}/${ref.name}`);
    }
    return data[ref.key];
  }

  private async writeKeys(dir: string, data: Record<string, string>, items: KeyToPath[] | undefined, mode = 0o644): Promise<void> {
    const entries = items ? items.map((i) => [i.path, data[i.key] ?? "", i.mode ?? mode] as const) : Object.entries(data).map(([k, v]) => [k, v, mode] as const);
    for (const [p, v, m] of entries) {
      const file = path.join(dir, p);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, v, { mode: m });
    }
  }

  /** The host directory behind each of the pod's volumes; undefined while a PVC is not yet bound. */
  private async volumeSources(pod: Named<Pod>, podDir: string, fsGroup: number | undefined): Promise<Map<string, string> | undefined> {
    const ns = pod.metadata.namespace ?? "default";
    const out = new Map<string, string>();
    for (const v of pod.spec.volumes ?? []) {
      const dir = path.join(podDir, "volumes", v.name);
      const src = await this.volumeSource(pod, ns, v, dir);
      if (src === undefined) return undefined;
      if (fsGroup !== undefined && (v.emptyDir || (v.persistentVolumeClaim && !v.persistentVolumeClaim.readOnly))) {
        await applyFsGroup(src, fsGroup);
      }
      out.set(v.name, src);
    }
    return out;
  }

  private async volumeSource(pod: Named<Pod>, ns: string, v: Volume, dir: string): Promise<string | undefined> {
    if (v.persistentVolumeClaim) return this.volumes.pvcPath(ns, v.persistentVolumeClaim.claimName);
    if (v.hostPath) return v.hostPath.path;
    await mkdir(dir, { recursive: true, mode: 0o755 });
    if (v.emptyDir) {
      await chmod(dir, 0o777);
      return dir;
    }
    if (v.secret) {
      const data = await this.readObject("secrets", ns, v.secret.secretName, v.secret.optional === true);
      await this.writeKeys(dir, data ?? {}, v.secret.items, v.secret.defaultMode);
      return dir;
    }
    if (v.configMap) {
      const data = await this.readObject("configmaps", ns, v.configMap.name, v.configMap.optional === true);
      await this.writeKeys(dir, data ?? {}, v.configMap.items, v.configMap.defaultMode);
      return dir;
    }
    if (v.downwardAPI) {
      for (const item of v.downwardAPI.items ?? []) {
        if (item.fieldRef) await this.writeKeys(dir, { [item.path]: this.fieldValue(pod, item.fieldRef.fieldPath) }, undefined);
      }
      return dir;
    }
    if (v.projected) {
      for (const s of v.projected.sources ?? []) {
        if (s.serviceAccountToken) {
          const tr = await this.api.create<{ status: { token: string } }>(
            `/api/v1/namespaces/${ns}/serviceaccounts/${pod.spec.serviceAccountName ?? "default"}/token`,
            {
              apiVersion: "authentication.k8s.io/v1",
              kind: "TokenRequest",
              spec: {
                audiences: s.serviceAccountToken.audience ? [s.serviceAccountToken.audience] : [],
                expirationSeconds: s.serviceAccountToken.expirationSeconds ?? 3600,
                boundObjectRef: { apiVersion: "v1", kind: "Pod", name: pod.metadata.name, uid: pod.metadata.uid },
              },
            },
          );
          await this.writeKeys(dir, { [s.serviceAccountToken.path]: tr.status.token }, undefined);
        }
        if (s.configMap) {
          const data = await this.readObject("configmaps", ns, s.configMap.name, s.configMap.optional === true);
          await this.writeKeys(dir, data ?? {}, s.configMap.items);
        }
        if (s.secret) {
          const data = await this.readObject("secrets", ns, s.secret.name, s.secret.optional === true);
          await this.writeKeys(dir, data ?? {}, s.secret.items);
        }
        if (s.downwardAPI) {
          for (const item of s.downwardAPI.items ?? []) {
            if (item.fieldRef) await this.writeKeys(dir, { [item.path]: this.fieldValue(pod, item.fieldRef.fieldPath) }, undefined);
          }
        }
      }
      return dir;
    }
    throw new ConfigError(`volume ${v.name}: this local node supports persistentVolumeClaim, emptyDir, hostPath, secret, configMap, downwardAPI and projected volumes`);
  }

  private async start(pod: Named<Pod>): Promise<void> {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    const uid = pod.metadata.uid ?? "";
    const podDir = this.podDir(pod);
    const all = [...(pod.spec.initContainers ?? []), ...pod.spec.containers];
    const local = all.map((c) => this.images(c.image ?? ""));
    const runsLocally = local.every((i) => i !== undefined);
    const fsGroup = pod.spec.securityContext?.fsGroup;

    let volumes: Map<string, string> | undefined;
    let envs: Record<string, string>[] = [];
    try {
      await mkdir(podDir, { recursive: true });
      volumes = await this.volumeSources(pod, podDir, fsGroup);
      if (!volumes) return this.waiting(pod, "ContainerCreating", "waiting for a PersistentVolumeClaim to be bound");
      if (runsLocally) envs = await Promise.all(all.map((c, i) => this.environment(pod, c, local[i] as LocalImage)));
      for (const [i, c] of all.entries()) this.identity(pod, c, local[i]);
    } catch (err) {
      if (err instanceof ConfigError) return this.waiting(pod, "CreateContainerConfigError", err.message);
      throw err;
    }

    const startedAt = nowIso();
    const run: RunningPod = { uid, children: new Map(), statuses: new Map(), done: false };
    this.running.set(uid, run);
    const statusOf = (c: Container, state: ContainerState, restartCount = 0): ContainerStatus => ({
      name: c.name, image: c.image ?? "", imageID: `local://${c.image ?? ""}`, ready: state.running !== undefined, started: state.running !== undefined, restartCount, state,
    });
    for (const c of pod.spec.containers) run.statuses.set(c.name, statusOf(c, { running: { startedAt } }));
    await this.patchStatus(pod, {
      phase: "Running",
      startTime: startedAt,
      conditions: ["PodScheduled", "Initialized", "ContainersReady", "Ready"].map((type) => ({ type, status: "True", lastTransitionTime: startedAt })),
      containerStatuses: [...run.statuses.values()],
    });
    this.log("Started pod", { pod: key, local: runsLocally });
    if (!runsLocally) return; // other images only show Running

    void (async () => {
      const inits = pod.spec.initContainers ?? [];
      for (const [i, c] of inits.entries()) {
        const code = await this.runContainer(pod, run, c, local[i] as LocalImage, envs[i] ?? {}, volumes, podDir);
        if (code.exitCode !== 0) return this.finish(pod, run, "Failed");
      }
      const results = await Promise.all(
        pod.spec.containers.map(async (c, j) => {
          const i = inits.length + j;
          let restarts = 0;
          for (;;) {
            const r = await this.runContainer(pod, run, c, local[i] as LocalImage, envs[i] ?? {}, volumes, podDir);
            run.statuses.set(c.name, statusOf(c, { terminated: { ...r, startedAt, finishedAt: nowIso() } }, restarts));
            const policy = pod.spec.restartPolicy ?? "Always";
            const again = !run.killed && (policy === "Always" || (policy === "OnFailure" && r.exitCode !== 0));
            if (!again) return r.exitCode;
            restarts++;
            await new Promise((res) => setTimeout(res, 1000));
          }
        }),
      );
      await this.finish(pod, run, results.every((c) => c === 0) && !run.killed ? "Succeeded" : "Failed");
    })().catch((err: unknown) => this.log("pod run failed", { pod: key, err: String(err) }));
  }

  private async finish(pod: Named<Pod>, run: RunningPod, phase: "Succeeded" | "Failed"): Promise<void> {
    run.done = true;
    const reason = run.killed === "DeadlineExceeded" ? { reason: "DeadlineExceeded", message: `Pod was active on the node longer than the specified deadline` } : {};
    await this.patchStatus(pod, {
      phase,
      ...reason,
      conditions: ["ContainersReady", "Ready"].map((type) => ({ type, status: "False", lastTransitionTime: nowIso(), reason: "PodCompleted" })),
      containerStatuses: [...run.statuses.values()],
    }).catch((e: unknown) => {
      if (!isNotFound(e)) throw e;
    });
    this.log(`Pod ${phase}`, { pod: `${pod.metadata.namespace}/${pod.metadata.name}` });
    this.kick();
  }

  /** The user, group and capabilities a container runs with, from its security context and its image. */
  private identity(pod: Named<Pod>, c: Container, image: LocalImage | undefined): { uid: number; gid: number; groups: number[]; sc: SecurityContext } {
    const { uid, gid, sc } = runsAs(pod.spec.securityContext, c.securityContext, image);
    if (sc.runAsNonRoot && uid === 0) {
      throw new ConfigError(`container ${c.name} has runAsNonRoot and image will run as root`);
    }
    const groups = [...(pod.spec.securityContext?.fsGroup !== undefined ? [pod.spec.securityContext.fsGroup] : []), ...(pod.spec.securityContext?.supplementalGroups ?? [])];
    return { uid, gid, groups, sc };
  }

  private async runContainer(
    pod: Named<Pod>,
    run: RunningPod,
    c: Container,
    image: LocalImage,
    env: Record<string, string>,
    volumes: Map<string, string>,
    podDir: string,
  ): Promise<{ exitCode: number; reason: string; message?: string }> {
    const { uid, gid, groups, sc } = this.identity(pod, c, image);
    const logFile = path.join(podDir, `${c.name}.log`);
    const termFile = path.join(podDir, `${c.name}.termination-log`);
    await writeFile(termFile, "", { mode: 0o666 });
    await chmod(termFile, 0o666);
    const mounts: Mount[] = [{ source: termFile, target: c.terminationMessagePath ?? "/dev/termination-log", readOnly: false, file: true }];
    for (const m of c.volumeMounts ?? []) {
      const src = volumes.get(m.name);
      if (!src) throw new Error(`volumeMount ${m.name}: no such volume`);
      const vol = pod.spec.volumes?.find((v) => v.name === m.name);
      const source = m.subPath ? path.join(src, m.subPath) : src;
      if (m.subPath) await mkdir(source, { recursive: true });
      mounts.push({ source, target: m.mountPath, readOnly: m.readOnly === true || vol?.persistentVolumeClaim?.readOnly === true, file: (await lstat(source)).isFile() });
    }
    // Parents before children, as container runtimes order mounts, so a mount at /a never hides one at /a/b.
    mounts.sort((a, b) => a.target.split("/").length - b.target.split("/").length);
    for (const m of mounts) {
      if (existsSync(m.target)) continue;
      if (m.file) {
        await mkdir(path.dirname(m.target), { recursive: true });
        await (await open(m.target, "a")).close();
      } else await mkdir(m.target, { recursive: true });
    }

    // command replaces the image's entrypoint; args follow whichever runs.
    const argv = [...(c.command ?? image.entrypoint), ...(c.args ?? [])].map((a) => expand(a, env));
    const targets = mounts.map((m) => shq(m.target)).join("|");
    const script = [
      "set -e",
      ...mounts.flatMap((m) => [
        `mount --bind ${shq(m.source)} ${shq(m.target)}`,
        ...(m.readOnly ? [`mount -o remount,bind,ro ${shq(m.target)}`] : []),
      ]),
      // A read-only root filesystem: after the volumes are in place (a bind mount copies its source mount's
      // read-only flag), every other mount but the kernel's own becomes read-only in this namespace.
      ...(sc.readOnlyRootFilesystem
        ? [`awk '{print $5}' /proc/self/mountinfo | grep -vE '^/(proc|sys|dev)(/|$)' | while read -r m; do case "$m" in ${targets}) ;; *) mount -o remount,bind,ro "$m" 2>/dev/null || true ;; esac; done`]
        : []),
      `cd ${shq(c.workingDir ?? image.workingDir ?? "/")}`,
      'exec "$@"',
    ].join("\n");
    const setpriv = [
      "setpriv",
      "--pdeathsig", "SIGKILL",
      `--reuid=${uid}`,
      `--regid=${gid}`,
      groups.length ? `--groups=${groups.join(",")}` : "--clear-groups",
      ...(sc.allowPrivilegeEscalation === false ? ["--no-new-privs"] : []),
      // As runc sets them: the bounding set is the container's capabilities, and nothing is inheritable or
      // ambient. A root process then holds exactly the bounding set after exec; a non-root one holds none.
      ...(sc.privileged ? [] : [`--bounding-set=${["-all", ...containerCapabilities(sc).map((c) => `+${c.toLowerCase()}`)].join(",")}`, "--inh-caps=-all"]),
      "--",
    ];
    const log = createWriteStream(logFile, { flags: "a" });
    const child = spawn("setpriv", ["--pdeathsig", "SIGKILL", "--", "unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", ...setpriv, ...argv], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    run.children.set(c.name, child);
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    const exitCode = await new Promise<number>((resolve) => {
      child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 + (signalNumbers[signal] ?? 9) : 1)));
      child.on("error", () => resolve(127));
    });
    await new Promise<void>((r) => log.end(r));
    run.children.delete(c.name);
    let message = (await readFile(termFile, "utf8").catch(() => "")).slice(0, TERMINATION_LIMIT);
    if (!message && exitCode !== 0 && c.terminationMessagePolicy === "FallbackToLogsOnError") {
      message = (await readFile(logFile, "utf8").catch(() => "")).split("\n").slice(-80).join("\n").slice(-2048);
    }
    return { exitCode, reason: exitCode === 0 ? "Completed" : "Error", ...(message ? { message } : {}) };
  }

  /** Container logs, as kubelet's /containerLogs serves them to `kubectl logs`. */
  async logs(namespace: string, name: string, container: string | undefined): Promise<string | undefined> {
    const pod = this.pods.get(namespace, name);
    if (!pod) return undefined;
    const c = container ?? pod.spec.containers[0]?.name;
    return readFile(path.join(this.podDir(pod), `${c}.log`), "utf8").catch(() => undefined);
  }

  stopAll(): void {
    for (const run of this.running.values()) for (const child of run.children.values()) this.signal(child, "SIGKILL");
  }
}

/**
 * Who a container runs as: its own security context over its pod's, then the image's user and group, then root,
 * as the kubelet and the runtime decide it.
 */
export function runsAs(
  pod: Pod["spec"]["securityContext"],
  container: SecurityContext | undefined,
  image: { readonly user?: number; readonly group?: number } | undefined,
): { uid: number; gid: number; sc: SecurityContext } {
  const sc: SecurityContext = { ...pod, ...container };
  return { uid: sc.runAsUser ?? image?.user ?? 0, gid: sc.runAsGroup ?? image?.group ?? 0, sc };
}

/** containerd's default capabilities (its oci.WithDefaultSpec, as CRI containers get them). */
const DEFAULT_CAPABILITIES = [
  "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
];

/** A container's capabilities as the CRI computes them: the defaults, less `drop` (ALL drops every one), plus `add`. */
export function containerCapabilities(sc: SecurityContext): string[] {
  const name = (c: string) => c.toUpperCase().replace(/^CAP_/, "");
  const drop = (sc.capabilities?.drop ?? []).map(name);
  const add = (sc.capabilities?.add ?? []).map(name);
  const kept = drop.includes("ALL") ? [] : DEFAULT_CAPABILITIES.filter((c) => !drop.includes(c));
  return [...new Set([...kept, ...add])].sort();
}

const signalNumbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

/** As kubelet does for volumes that support ownership management: group-owned by fsGroup, group-writable, setgid dirs. */
async function applyFsGroup(dir: string, gid: number): Promise<void> {
  const visit = async (p: string): Promise<void> => {
    const st = await lstat(p);
    if (st.isSymbolicLink()) return;
    await chown(p, st.uid, gid);
    await chmod(p, (st.mode & 0o7777) | 0o060 | (st.isDirectory() ? 0o2010 : 0));
    if (st.isDirectory()) for (const e of await readdir(p)) await visit(path.join(p, e));
  };
  await visit(dir);
}

// The local node agent as a CSI driver: the CSI Identity and Controller services (container-storage-interface/spec
// v1.13.0, its csi.proto read from the Go module, never copied) over a unix socket, for the real external-provisioner,
// csi-snapshotter and csi-sanity, and the Node service the real node's kubelet calls (NodeGetInfo, NodeGetCapabilities: none,
// nothing to stage; NodePublishVolume, a bind mount; NodeUnpublishVolume), registered with that kubelet through its plugin
// registration socket. Volumes and snapshots are directories, as in csi-hostpath; a snapshot or a clone is a faithful copy
// (copyTreeAs).
//
// What it keeps beside the directories, in one JSON file, is what makes every call idempotent by name, as the spec
// asks: a volume's name, capacity and source, a snapshot's name, source volume, size and creation time.
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { copyTreeAs, du, DRIVER, NODE_NAME } from "./csi.ts";
import { csiProtoFile, pluginRegistrationProtoFile } from "./toolchain.ts";

const execFileP = promisify(execFile);

const DEFAULT_CAPACITY = 1024 ** 3;

interface VolumeRecord {
  readonly id: string;
  readonly name: string;
  readonly capacityBytes: number;
  readonly source?: { readonly snapshotId: string } | { readonly volumeId: string };
}

interface SnapshotRecord {
  readonly id: string;
  readonly name: string;
  readonly sourceVolumeId: string;
  readonly sizeBytes: number;
  /** Seconds and nanos since the epoch, as google.protobuf.Timestamp. */
  readonly created: { readonly seconds: number; readonly nanos: number };
}

interface State {
  volumes: Record<string, VolumeRecord>;
  snapshots: Record<string, SnapshotRecord>;
}

class CsiError extends Error {
  readonly code: grpc.status;
  constructor(code: grpc.status, message: string) {
    super(message);
    this.code = code;
  }
}

// ---- Requests, as proto-loader decodes them (keepCase: the proto's own field names)

interface Capability {
  readonly mount?: object;
  readonly block?: object;
  readonly access_mode?: { readonly mode?: string };
}
interface CreateVolumeRequest {
  readonly name: string;
  readonly capacity_range?: { readonly required_bytes?: string; readonly limit_bytes?: string };
  readonly volume_capabilities: readonly Capability[];
  readonly volume_content_source?: { readonly snapshot?: { readonly snapshot_id: string }; readonly volume?: { readonly volume_id: string } };
}

interface CreateSnapshotRequest {
  readonly name: string;
  readonly source_volume_id: string;
  readonly parameters?: Readonly<Record<string, string>>;
}

const SUPPORTED_ACCESS = new Set([
  "SINGLE_NODE_WRITER",
  "SINGLE_NODE_READER_ONLY",
  "SINGLE_NODE_SINGLE_WRITER",
  "SINGLE_NODE_MULTI_WRITER",
  "MULTI_NODE_READER_ONLY",
  "MULTI_NODE_SINGLE_WRITER",
  "MULTI_NODE_MULTI_WRITER",
]);

/** Why a set of capabilities is not one this driver gives, or undefined when it is: filesystem volumes only. */
function unsupported(caps: readonly Capability[]): string | undefined {
  for (const c of caps) {
    if (!c.mount && !c.block) return "a volume capability must say mount or block";
    if (c.block) return "this driver serves filesystem volumes only, not block";
    if (!c.access_mode?.mode || !SUPPORTED_ACCESS.has(c.access_mode.mode)) return `access mode ${c.access_mode?.mode ?? "(none)"} is not supported`;
  }
  return undefined;
}

const bytes = (v: string | undefined): number => (v ? Number(v) : 0);

export interface CsiDriverOptions {
  readonly volumesDir: string;
  readonly snapshotsDir: string;
  readonly stateFile: string;
  /**
   * Asked before each new snapshot, with CreateSnapshot's parameters (csi-snapshotter's --extra-create-metadata puts
   * the VolumeSnapshot's name and namespace there): a message makes the call fail with FAILED_PRECONDITION, as a
   * storage backend's refusal would. The local cluster's test hook (SNAPSHOT_ERROR_ANNOTATION).
   */
  readonly refuseSnapshot?: (parameters: Readonly<Record<string, string>>) => Promise<string | undefined>;
}

/** The storage a driver holds, read from its state file: for tests that check nothing is left behind. */
export async function readInventory(stateFile: string): Promise<{ volumes: string[]; snapshots: string[] }> {
  const state = existsSync(stateFile) ? (JSON.parse(await readFile(stateFile, "utf8")) as State) : { volumes: {}, snapshots: {} };
  return { volumes: Object.keys(state.volumes), snapshots: Object.keys(state.snapshots) };
}

export class CsiDriver {
  private readonly volumesDir: string;
  private readonly snapshotsDir: string;
  private readonly stateFile: string;
  private readonly refuseSnapshot: CsiDriverOptions["refuseSnapshot"];
  private state: State = { volumes: {}, snapshots: {} };
  /** Calls run one at a time: the state is read, changed and written whole. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: CsiDriverOptions) {
    this.volumesDir = opts.volumesDir;
    this.snapshotsDir = opts.snapshotsDir;
    this.stateFile = opts.stateFile;
    this.refuseSnapshot = opts.refuseSnapshot;
  }

  async init(): Promise<void> {
    await mkdir(this.volumesDir, { recursive: true });
    await mkdir(this.snapshotsDir, { recursive: true });
    await mkdir(path.dirname(this.stateFile), { recursive: true });
    if (existsSync(this.stateFile)) this.state = JSON.parse(await readFile(this.stateFile, "utf8")) as State;
  }

  volumePath(id: string): string {
    return path.join(this.volumesDir, id);
  }

  snapshotPath(id: string): string {
    return path.join(this.snapshotsDir, id);
  }

  private async save(): Promise<void> {
    const tmp = `${this.stateFile}.tmp`;
    await writeFile(tmp, JSON.stringify(this.state));
    await rename(tmp, this.stateFile);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  // ---- Identity

  getPluginInfo() {
    return { name: DRIVER, vendor_version: "walle-local" };
  }

  getPluginCapabilities() {
    // No VOLUME_ACCESSIBILITY_CONSTRAINTS: one node, no topology.
    return { capabilities: [{ service: { type: "CONTROLLER_SERVICE" } }] };
  }

  probe() {
    return { ready: { value: true } };
  }

  // ---- Controller

  controllerGetCapabilities() {
    // LIST_SNAPSHOTS lets csi-snapshotter check a pre-provisioned content's handle and learn its size.
    const rpcs = ["CREATE_DELETE_VOLUME", "CREATE_DELETE_SNAPSHOT", "LIST_SNAPSHOTS", "CLONE_VOLUME"];
    return { capabilities: rpcs.map((type) => ({ rpc: { type } })) };
  }

  createVolume(req: CreateVolumeRequest) {
    return this.serial(async () => {
      if (!req.name) throw new CsiError(grpc.status.INVALID_ARGUMENT, "name is required");
      if (!req.volume_capabilities?.length) throw new CsiError(grpc.status.INVALID_ARGUMENT, "volume_capabilities are required");
      const why = unsupported(req.volume_capabilities);
      if (why) throw new CsiError(grpc.status.INVALID_ARGUMENT, why);
      const required = bytes(req.capacity_range?.required_bytes);
      const limit = bytes(req.capacity_range?.limit_bytes);
      if (limit && required > limit) throw new CsiError(grpc.status.OUT_OF_RANGE, `required_bytes ${required} exceeds limit_bytes ${limit}`);
      const source = req.volume_content_source?.snapshot
        ? { snapshotId: req.volume_content_source.snapshot.snapshot_id }
        : req.volume_content_source?.volume
          ? { volumeId: req.volume_content_source.volume.volume_id }
          : undefined;
      const existing = Object.values(this.state.volumes).find((v) => v.name === req.name);
      if (existing) {
        const fits =
          existing.capacityBytes >= required && (!limit || existing.capacityBytes <= limit) && JSON.stringify(existing.source) === JSON.stringify(source);
        if (!fits) throw new CsiError(grpc.status.ALREADY_EXISTS, `volume ${req.name} exists with another capacity or source`);
        return { volume: this.volumeMessage(existing) };
      }
      const snapshotId = source && "snapshotId" in source ? source.snapshotId : undefined;
      const volumeId = source && "volumeId" in source ? source.volumeId : undefined;
      const from = snapshotId !== undefined ? this.state.snapshots[snapshotId] : undefined;
      if (snapshotId !== undefined && !from) throw new CsiError(grpc.status.NOT_FOUND, `snapshot ${snapshotId} does not exist`);
      const clone = volumeId !== undefined ? this.state.volumes[volumeId] : undefined;
      if (volumeId !== undefined && !clone) throw new CsiError(grpc.status.NOT_FOUND, `volume ${volumeId} does not exist`);
      const floor = Math.max(required, from?.sizeBytes ?? 0, clone?.capacityBytes ?? 0);
      if (limit && floor > limit) throw new CsiError(grpc.status.OUT_OF_RANGE, `the source needs ${floor} bytes, more than limit_bytes ${limit}`);
      const record: VolumeRecord = {
        id: `vol-${randomUUID()}`,
        name: req.name,
        capacityBytes: floor || (limit ? Math.min(limit, DEFAULT_CAPACITY) : DEFAULT_CAPACITY),
        ...(source ? { source } : {}),
      };
      const target = this.volumePath(record.id);
      if (from) await copyTreeAs(this.snapshotPath(from.id), target);
      else if (clone) await copyTreeAs(this.volumePath(clone.id), target);
      else {
        await mkdir(target, { recursive: true });
        await chmod(target, 0o777); // mkdir's mode passes through the umask; as hostpath drivers do, any pod may write
      }
      this.state.volumes[record.id] = record;
      await this.save();
      return { volume: this.volumeMessage(record) };
    });
  }

  private volumeMessage(v: VolumeRecord) {
    return {
      volume_id: v.id,
      capacity_bytes: String(v.capacityBytes),
      ...(v.source
        ? { content_source: "snapshotId" in v.source ? { snapshot: { snapshot_id: v.source.snapshotId } } : { volume: { volume_id: v.source.volumeId } } }
        : {}),
    };
  }

  deleteVolume(req: { volume_id: string }) {
    return this.serial(async () => {
      if (!req.volume_id) throw new CsiError(grpc.status.INVALID_ARGUMENT, "volume_id is required");
      if (!this.state.volumes[req.volume_id]) return {}; // already gone: success, as the spec asks
      await rm(this.volumePath(req.volume_id), { recursive: true, force: true });
      delete this.state.volumes[req.volume_id];
      await this.save();
      return {};
    });
  }

  validateVolumeCapabilities(req: {
    volume_id: string;
    volume_capabilities: readonly Capability[];
    volume_context?: Record<string, string>;
    parameters?: Record<string, string>;
  }) {
    if (!req.volume_id) throw new CsiError(grpc.status.INVALID_ARGUMENT, "volume_id is required");
    if (!req.volume_capabilities?.length) throw new CsiError(grpc.status.INVALID_ARGUMENT, "volume_capabilities are required");
    if (!this.state.volumes[req.volume_id]) throw new CsiError(grpc.status.NOT_FOUND, `volume ${req.volume_id} does not exist`);
    const why = unsupported(req.volume_capabilities);
    if (why) return { message: why };
    return { confirmed: { volume_context: req.volume_context ?? {}, volume_capabilities: req.volume_capabilities, parameters: req.parameters ?? {} } };
  }

  createSnapshot(req: CreateSnapshotRequest) {
    return this.serial(async () => {
      if (!req.name) throw new CsiError(grpc.status.INVALID_ARGUMENT, "name is required");
      if (!req.source_volume_id) throw new CsiError(grpc.status.INVALID_ARGUMENT, "source_volume_id is required");
      const existing = Object.values(this.state.snapshots).find((s) => s.name === req.name);
      if (existing) {
        if (existing.sourceVolumeId !== req.source_volume_id) throw new CsiError(grpc.status.ALREADY_EXISTS, `snapshot ${req.name} exists of another volume`);
        return { snapshot: this.snapshotMessage(existing) };
      }
      const volume = this.state.volumes[req.source_volume_id];
      if (!volume) throw new CsiError(grpc.status.NOT_FOUND, `volume ${req.source_volume_id} does not exist`);
      const refused = await this.refuseSnapshot?.(req.parameters ?? {});
      if (refused) throw new CsiError(grpc.status.FAILED_PRECONDITION, refused);
      const id = `snap-${randomUUID()}`;
      await copyTreeAs(this.volumePath(volume.id), this.snapshotPath(id));
      const now = Date.now();
      // The size a volume made from it needs: the source's capacity, at least what the copy holds.
      const record: SnapshotRecord = {
        id,
        name: req.name,
        sourceVolumeId: volume.id,
        sizeBytes: Math.max(volume.capacityBytes, await du(this.snapshotPath(id))),
        created: { seconds: Math.floor(now / 1000), nanos: (now % 1000) * 1e6 },
      };
      this.state.snapshots[id] = record;
      await this.save();
      return { snapshot: this.snapshotMessage(record) };
    });
  }

  private snapshotMessage(s: SnapshotRecord) {
    return { snapshot_id: s.id, source_volume_id: s.sourceVolumeId, size_bytes: String(s.sizeBytes), creation_time: s.created, ready_to_use: true };
  }

  /**
   * One snapshot by id, the snapshots of one volume, or all, in id order, a page of `max_entries` at a time; the
   * next_token is the id to start the next page at. An unknown id is an empty list, as the spec asks.
   */
  listSnapshots(req: { max_entries?: number; starting_token?: string; source_volume_id?: string; snapshot_id?: string }) {
    const all = Object.values(this.state.snapshots)
      .filter((s) => (!req.snapshot_id || s.id === req.snapshot_id) && (!req.source_volume_id || s.sourceVolumeId === req.source_volume_id))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const max = req.max_entries ?? 0;
    if (max < 0) throw new CsiError(grpc.status.INVALID_ARGUMENT, "max_entries must not be negative");
    let start = 0;
    if (req.starting_token) {
      start = all.findIndex((s) => s.id === req.starting_token);
      if (start < 0) throw new CsiError(grpc.status.ABORTED, `starting_token ${req.starting_token} does not name a snapshot`);
    }
    const page = max > 0 ? all.slice(start, start + max) : all.slice(start);
    const next = max > 0 ? all[start + max]?.id : undefined;
    return { entries: page.map((s) => ({ snapshot: this.snapshotMessage(s) })), next_token: next ?? "" };
  }

  deleteSnapshot(req: { snapshot_id: string }) {
    return this.serial(async () => {
      if (!req.snapshot_id) throw new CsiError(grpc.status.INVALID_ARGUMENT, "snapshot_id is required");
      if (!this.state.snapshots[req.snapshot_id]) return {};
      await rm(this.snapshotPath(req.snapshot_id), { recursive: true, force: true });
      delete this.state.snapshots[req.snapshot_id];
      await this.save();
      return {};
    });
  }

  // ---- Node: publishing a volume is a bind mount of its directory at the target path (read-only where asked),
  // as csi-hostpath does; there is nothing to stage. The node's kubelet calls these.

  nodeGetCapabilities() {
    return { capabilities: [] };
  }

  nodeGetInfo() {
    return { node_id: NODE_NAME, max_volumes_per_node: "0" };
  }

  nodePublishVolume(req: { volume_id: string; target_path: string; readonly?: boolean; volume_capability?: { mount?: unknown; block?: unknown } }) {
    return this.serial(async () => {
      if (!req.volume_id) throw new CsiError(grpc.status.INVALID_ARGUMENT, "volume_id is required");
      if (!req.target_path) throw new CsiError(grpc.status.INVALID_ARGUMENT, "target_path is required");
      if (!req.volume_capability) throw new CsiError(grpc.status.INVALID_ARGUMENT, "volume_capability is required");
      if (req.volume_capability.block) throw new CsiError(grpc.status.INVALID_ARGUMENT, "block volumes are not supported: volumes here are directories");
      if (!this.state.volumes[req.volume_id]) throw new CsiError(grpc.status.NOT_FOUND, `volume ${req.volume_id} does not exist`);
      const mounted = await mountedAt(req.target_path);
      if (mounted) {
        if (mounted.readOnly !== Boolean(req.readonly))
          throw new CsiError(grpc.status.ALREADY_EXISTS, `${req.target_path} is published ${mounted.readOnly ? "read-only" : "read-write"} already`);
        return {};
      }
      await mkdir(req.target_path, { recursive: true });
      await execFileP("mount", ["--bind", this.volumePath(req.volume_id), req.target_path]);
      // A bind mount takes the read-only flag only by a remount of itself.
      if (req.readonly) await execFileP("mount", ["-o", "remount,bind,ro", req.target_path]);
      return {};
    });
  }

  /** Idempotent, as the spec asks: a target that is not mounted (or gone) is already unpublished. */
  nodeUnpublishVolume(req: { volume_id: string; target_path: string }) {
    return this.serial(async () => {
      if (!req.volume_id) throw new CsiError(grpc.status.INVALID_ARGUMENT, "volume_id is required");
      if (!req.target_path) throw new CsiError(grpc.status.INVALID_ARGUMENT, "target_path is required");
      if (!this.state.volumes[req.volume_id]) throw new CsiError(grpc.status.NOT_FOUND, `volume ${req.volume_id} does not exist`);
      while (await mountedAt(req.target_path)) await execFileP("umount", [req.target_path]);
      await rm(req.target_path, { recursive: false, force: true }).catch(() => {});
      await execFileP("rmdir", [req.target_path]).catch(() => {});
      return {};
    });
  }
}

/** This process's mounts, in /proc/self/mountinfo's order: each mount point (unescaped) and whether it is read-only. */
export async function mounts(): Promise<{ target: string; readOnly: boolean }[]> {
  const unescape = (p: string) => p.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return (await readFile("/proc/self/mountinfo", "utf8"))
    .split("\n")
    .map((l) => l.split(" "))
    .filter((f) => f[4] !== undefined)
    .map((f) => ({ target: unescape(f[4] ?? ""), readOnly: (f[5] ?? "").split(",").includes("ro") }));
}

/** Unmounts (lazily) every mount at or below `root`, deepest first, so the directory can go. */
export async function unmountUnder(root: string): Promise<void> {
  const under = (await mounts())
    .map((m) => m.target)
    .filter((m) => m === root || m.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of under) await execFileP("umount", ["--lazy", m]).catch(() => {});
}

/** The mount at exactly `target` (the last one, which is what a path resolves to). */
async function mountedAt(target: string): Promise<{ readOnly: boolean } | undefined> {
  return (await mounts()).filter((m) => m.target === path.resolve(target)).at(-1);
}

export interface CsiServer {
  readonly socket: string;
  readonly driver: CsiDriver;
  stop(): Promise<void>;
}

type Handler = (req: never) => unknown;

/**
 * Serves the driver's Identity, Controller and (informational) Node services on a unix socket. Unimplemented RPCs
 * answer UNIMPLEMENTED.
 */
export async function serveCsi(driver: CsiDriver, socket: string, log: (msg: string, extra?: Record<string, unknown>) => void = () => {}): Promise<CsiServer> {
  const definition = await protoLoader.load(await csiProtoFile(), { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { csi: { v1: Record<string, { service: grpc.ServiceDefinition }> } };
  const server = new grpc.Server();
  const wrap =
    (name: string, fn: Handler): grpc.handleUnaryCall<unknown, unknown> =>
    (call, callback) => {
      Promise.resolve()
        .then(() => fn(call.request as never))
        .then(
          (reply) => callback(null, reply),
          (err: unknown) => {
            const code = err instanceof CsiError ? err.code : grpc.status.INTERNAL;
            log(`CSI ${name} failed`, { code: grpc.status[code], err: String(err instanceof Error ? err.message : err) });
            callback({ code, details: err instanceof Error ? err.message : String(err) });
          },
        );
    };
  const services = {
    Identity: { GetPluginInfo: () => driver.getPluginInfo(), GetPluginCapabilities: () => driver.getPluginCapabilities(), Probe: () => driver.probe() },
    Controller: {
      ControllerGetCapabilities: () => driver.controllerGetCapabilities(),
      CreateVolume: (r: CreateVolumeRequest) => driver.createVolume(r),
      DeleteVolume: (r: { volume_id: string }) => driver.deleteVolume(r),
      ValidateVolumeCapabilities: (r: Parameters<CsiDriver["validateVolumeCapabilities"]>[0]) => driver.validateVolumeCapabilities(r),
      CreateSnapshot: (r: CreateSnapshotRequest) => driver.createSnapshot(r),
      ListSnapshots: (r: Parameters<CsiDriver["listSnapshots"]>[0]) => driver.listSnapshots(r),
      DeleteSnapshot: (r: { snapshot_id: string }) => driver.deleteSnapshot(r),
    },
    Node: {
      NodeGetCapabilities: () => driver.nodeGetCapabilities(),
      NodeGetInfo: () => driver.nodeGetInfo(),
      NodePublishVolume: (r: Parameters<CsiDriver["nodePublishVolume"]>[0]) => driver.nodePublishVolume(r),
      NodeUnpublishVolume: (r: { volume_id: string; target_path: string }) => driver.nodeUnpublishVolume(r),
    },
  } as const;
  for (const [service, handlers] of Object.entries(services)) {
    const def = pkg.csi.v1[service]?.service;
    if (!def) throw new Error(`csi.proto has no service ${service}`);
    const impl: grpc.UntypedServiceImplementation = {};
    for (const method of Object.keys(def)) {
      const fn = (handlers as Record<string, Handler | undefined>)[method];
      impl[method] = fn ? wrap(method, fn) : wrap(method, () => Promise.reject(new CsiError(grpc.status.UNIMPLEMENTED, `${method} is not implemented`)));
    }
    server.addService(def, impl);
  }
  await mkdir(path.dirname(socket), { recursive: true });
  await rm(socket, { force: true });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  log("CSI driver listening", { socket });
  return {
    socket,
    driver,
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

export interface Registration {
  /** Resolves once the kubelet has said whether it registered the driver, and rejects if it refused it. */
  readonly registered: Promise<void>;
  stop(): Promise<void>;
}

/**
 * Registers the driver with a kubelet: serves the kubelet's plugin registration API (`pluginregistration`, from
 * `k8s.io/kubelet`) on `socket` in the kubelet's `plugins_registry` directory. The kubelet finds the socket, asks
 * GetInfo, then calls the driver's Node service on `csiSocket`, and reports the outcome. Elsewhere the
 * node-driver-registrar sidecar does this; its module is not served here.
 */
export async function serveRegistration(
  socket: string,
  csiSocket: string,
  log: (msg: string, extra?: Record<string, unknown>) => void = () => {},
): Promise<Registration> {
  const definition = await protoLoader.load(await pluginRegistrationProtoFile(), { keepCase: true, defaults: true });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { pluginregistration: { Registration: { service: grpc.ServiceDefinition } } };
  let settle: { resolve: () => void; reject: (e: Error) => void } | undefined;
  const registered = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  const server = new grpc.Server();
  server.addService(pkg.pluginregistration.Registration.service, {
    GetInfo: (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
      callback(null, { type: "CSIPlugin", name: DRIVER, endpoint: csiSocket, supported_versions: ["1.0.0"] }),
    NotifyRegistrationStatus: (call: grpc.ServerUnaryCall<{ plugin_registered: boolean; error: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const { plugin_registered: ok, error } = call.request;
      log(ok ? "CSI driver registered with the kubelet" : "the kubelet refused the CSI driver", { driver: DRIVER, error });
      if (ok) settle?.resolve();
      else settle?.reject(new Error(`the kubelet refused CSI driver ${DRIVER}: ${error}`));
      callback(null, {});
    },
  });
  await mkdir(path.dirname(socket), { recursive: true });
  await rm(socket, { force: true });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  return { registered, stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) };
}

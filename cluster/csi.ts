// The local CSI driver, doing what csi-hostpath does with its external provisioner and snapshotter:
// volumes are directories, snapshots are copies of a directory under a snapshot handle.
// Every pass is level-triggered: it looks at the cached objects and moves each one step on.
import { execFile } from "node:child_process";
import { chmod, mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { promisify } from "node:util";
import { existsSync } from "node:fs";
import path from "node:path";
import { isAlreadyExists, isNotFound, type RestClient } from "../lib/k8s/rest.ts";
import type { Informer } from "../lib/k8s/informer.ts";
import type { Named, Pv, Pvc, StorageClass } from "../lib/api/kube.ts";
import type { VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent } from "./types.ts";

export const DRIVER = "hostpath.csi.walle.local";
// The names csi-hostpath's deploy examples use, which the original Walle's examples name too.
export const STORAGE_CLASS = "csi-hostpath-sc";
export const SNAPSHOT_CLASS = "csi-hostpath-snapclass";
/** Test hook: on a VolumeSnapshot, or on the PVC it snapshots, makes the snapshot fail with this message. */
export const SNAPSHOT_ERROR_ANNOTATION = "local.walle.dev/snapshot-error";

const SNAP_API = "/apis/snapshot.storage.k8s.io/v1";

export interface CsiCaches {
  pvcs: Informer<Named<Pvc>>;
  pvs: Informer<Named<Pv>>;
  storageClasses: Informer<Named<StorageClass>>;
  snapshots: Informer<Named<VolumeSnapshot>>;
  contents: Informer<Named<VolumeSnapshotContent>>;
  snapshotClasses: Informer<Named<VolumeSnapshotClass>>;
}

export const nowIso = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

/** Bytes used by a directory tree, for restoreSize. */
const run = promisify(execFile);

/**
 * A faithful copy of a volume's tree into `dest`, as a storage snapshot or clone would be: GNU cp's archive mode
 * keeps owners, modes (setuid and setgid too), timestamps, hard links, symlinks as they are, FIFOs and device nodes
 * as special files (never opened, so nothing blocks on a FIFO), holes (`--sparse=always`) and extended attributes.
 */
export async function copyTree(src: string, dest: string): Promise<void> {
  await mkdir(dest, { recursive: true });
  await run("cp", ["--archive", "--sparse=always", "--preserve=all", "--no-target-directory", src, dest], { maxBuffer: 16 * 1024 * 1024 });
}

/** copyTree by way of a temporary sibling renamed at the end, so a half-made copy never carries `dest`'s name. */
export async function copyTreeAs(src: string, dest: string): Promise<void> {
  const tmp = `${dest}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await copyTree(src, tmp);
  await rename(tmp, dest);
}

export async function du(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(path.join(entry.parentPath, entry.name))).size;
  }
  return total;
}

export class LocalCsi {
  readonly volumesDir: string;
  readonly snapshotsDir: string;

  private readonly api: RestClient;
  private readonly c: CsiCaches;
  private readonly log: (msg: string, extra?: Record<string, unknown>) => void;

  constructor(api: RestClient, caches: CsiCaches, stateDir: string, log: (msg: string, extra?: Record<string, unknown>) => void) {
    this.api = api;
    this.c = caches;
    this.log = log;
    this.volumesDir = path.join(stateDir, "volumes");
    this.snapshotsDir = path.join(stateDir, "snapshots");
  }

  async init(): Promise<void> {
    await mkdir(this.volumesDir, { recursive: true });
    await mkdir(this.snapshotsDir, { recursive: true });
  }

  volumePath(handle: string): string {
    return path.join(this.volumesDir, handle);
  }

  snapshotPath(handle: string): string {
    return path.join(this.snapshotsDir, handle);
  }

  /** The directory behind a bound PVC, or undefined while it is not bound to one of our volumes. */
  pvcPath(namespace: string, name: string): string | undefined {
    const pvc = this.c.pvcs.get(namespace, name);
    if (!pvc?.spec.volumeName || pvc.status?.phase !== "Bound") return undefined;
    const pv = this.c.pvs.get(undefined, pvc.spec.volumeName);
    return pv?.spec.csi?.driver === DRIVER ? this.volumePath(pv.spec.csi.volumeHandle) : undefined;
  }

  async reconcile(): Promise<void> {
    for (const pvc of this.c.pvcs.list()) await this.step("provision", pvc.metadata, () => this.provision(pvc));
    for (const pv of this.c.pvs.list()) await this.step("reclaim", pv.metadata, () => this.reclaim(pv));
    for (const vs of this.c.snapshots.list()) await this.step("snapshot", vs.metadata, () => this.snapshot(vs));
    for (const content of this.c.contents.list()) await this.step("content", content.metadata, () => this.content(content));
  }

  /** Runs one step; a failure is logged and retried on the next pass, as a controller's work queue does. */
  private async step(what: string, meta: { namespace?: string; name: string }, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.log(`${what} failed`, { object: `${meta.namespace ?? ""}/${meta.name}`, err: String(err) });
    }
  }

  private ours(pvc: Pvc): boolean {
    const sc = pvc.spec.storageClassName ? this.c.storageClasses.get(undefined, pvc.spec.storageClassName) : undefined;
    return sc?.provisioner === DRIVER || pvc.metadata.annotations?.["volume.kubernetes.io/storage-provisioner"] === DRIVER;
  }

  private async provision(pvc: Pvc): Promise<void> {
    if (pvc.status?.phase !== "Pending" || pvc.spec.volumeName || pvc.metadata.deletionTimestamp || !this.ours(pvc)) return;
    const pvName = `pvc-${pvc.metadata.uid}`;
    if (this.c.pvs.get(undefined, pvName)) return;
    const ns = pvc.metadata.namespace ?? "";
    const target = this.volumePath(pvName);
    const source = pvc.spec.dataSourceRef ?? pvc.spec.dataSource;
    if (source?.kind === "VolumeSnapshot") {
      const vs = this.c.snapshots.get(pvc.spec.dataSourceRef?.namespace ?? ns, source.name);
      const content = vs?.status?.boundVolumeSnapshotContentName ? this.c.contents.get(undefined, vs.status.boundVolumeSnapshotContentName) : undefined;
      const handle = content?.status?.snapshotHandle;
      if (!vs?.status?.readyToUse || !handle) return; // the external provisioner waits for a ready snapshot too
      await rm(target, { recursive: true, force: true });
      await copyTree(this.snapshotPath(handle), target);
    } else if (source?.kind === "PersistentVolumeClaim") {
      const from = this.pvcPath(ns, source.name);
      if (!from) return;
      await rm(target, { recursive: true, force: true });
      await copyTree(from, target);
    } else {
      await mkdir(target, { recursive: true });
      await chmod(target, 0o777); // as hostpath provisioners do, so non-root pods can write their volume
    }
    const sc = this.c.storageClasses.get(undefined, pvc.spec.storageClassName ?? "");
    const pv: Pv = {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: pvName, annotations: { "pv.kubernetes.io/provisioned-by": DRIVER } },
      spec: {
        csi: { driver: DRIVER, volumeHandle: pvName },
        claimRef: { apiVersion: "v1", kind: "PersistentVolumeClaim", namespace: ns, name: pvc.metadata.name, uid: pvc.metadata.uid },
        persistentVolumeReclaimPolicy: sc?.reclaimPolicy ?? "Delete",
        storageClassName: pvc.spec.storageClassName,
        capacity: { storage: pvc.spec.resources?.requests?.storage ?? "1Gi" },
        accessModes: pvc.spec.accessModes ?? ["ReadWriteOnce"],
        volumeMode: "Filesystem",
      },
    };
    await this.api.create("/api/v1/persistentvolumes", pv).catch((e: unknown) => {
      if (!isAlreadyExists(e)) throw e;
    });
    this.log("Provisioned volume", { pvc: `${ns}/${pvc.metadata.name}`, pv: pvName, from: source?.kind });
  }

  /** A released volume with the Delete policy is removed, data and object; Retain keeps both. */
  private async reclaim(pv: Pv): Promise<void> {
    if (pv.spec.csi?.driver !== DRIVER || pv.status?.phase !== "Released" || pv.metadata.deletionTimestamp) return;
    if (pv.spec.persistentVolumeReclaimPolicy !== "Delete") return;
    await rm(this.volumePath(pv.spec.csi.volumeHandle), { recursive: true, force: true });
    await this.api.delete(`/api/v1/persistentvolumes/${pv.metadata.name}`).catch((e: unknown) => {
      if (!isNotFound(e)) throw e;
    });
    this.log("Deleted released volume", { pv: pv.metadata.name });
  }

  private snapshotClassFor(vs: VolumeSnapshot): Named<VolumeSnapshotClass> | undefined {
    const named = vs.spec.volumeSnapshotClassName;
    if (named) return this.c.snapshotClasses.get(undefined, named);
    return this.c.snapshotClasses
      .list()
      .find((c) => c.driver === DRIVER && c.metadata.annotations?.["snapshot.storage.kubernetes.io/is-default-class"] === "true");
  }

  private async setSnapshotStatus(vs: Named<VolumeSnapshot>, status: NonNullable<VolumeSnapshot["status"]>): Promise<void> {
    await this.api.patch(
      `${SNAP_API}/namespaces/${vs.metadata.namespace}/volumesnapshots/${vs.metadata.name}/status`,
      { status },
    );
  }

  private async failSnapshot(vs: Named<VolumeSnapshot>, message: string): Promise<void> {
    if (vs.status?.error?.message === message) return;
    await this.setSnapshotStatus(vs, { readyToUse: false, error: { message, time: nowIso() } });
    this.log("Snapshot failed", { snapshot: `${vs.metadata.namespace}/${vs.metadata.name}`, message });
  }

  private async snapshot(vs: Named<VolumeSnapshot>): Promise<void> {
    if (vs.status?.readyToUse || vs.metadata.deletionTimestamp) return;
    const ns = vs.metadata.namespace ?? "";
    const ref = { apiVersion: "snapshot.storage.k8s.io/v1", kind: "VolumeSnapshot", name: vs.metadata.name, namespace: ns, uid: vs.metadata.uid };
    const preContent = vs.spec.source.volumeSnapshotContentName;
    if (preContent) {
      // Pre-provisioned: bind to the content that names this snapshot, by its snapshot handle.
      const content = this.c.contents.get(undefined, preContent);
      if (!content) return;
      if (content.spec.volumeSnapshotRef.name !== vs.metadata.name || content.spec.volumeSnapshotRef.namespace !== ns) {
        return this.failSnapshot(vs, `VolumeSnapshotContent ${preContent} is bound to another VolumeSnapshot`);
      }
      const handle = content.spec.source.snapshotHandle ?? content.status?.snapshotHandle;
      if (!handle || !existsSync(this.snapshotPath(handle))) {
        return this.failSnapshot(vs, `snapshot handle ${handle ?? "(none)"} of VolumeSnapshotContent ${preContent} does not exist`);
      }
      const size = await du(this.snapshotPath(handle));
      if (!content.spec.volumeSnapshotRef.uid) {
        await this.api.patch(`${SNAP_API}/volumesnapshotcontents/${preContent}`, { spec: { volumeSnapshotRef: { uid: vs.metadata.uid } } });
      }
      await this.api.patch(`${SNAP_API}/volumesnapshotcontents/${preContent}/status`, {
        status: { snapshotHandle: handle, readyToUse: true, restoreSize: size, creationTime: Date.now() * 1e6 },
      });
      await this.setSnapshotStatus(vs, { boundVolumeSnapshotContentName: preContent, readyToUse: true, restoreSize: String(size), creationTime: nowIso() });
      this.log("Bound pre-provisioned snapshot", { snapshot: `${ns}/${vs.metadata.name}`, content: preContent, handle });
      return;
    }

    const pvcName = vs.spec.source.persistentVolumeClaimName;
    if (!pvcName) return this.failSnapshot(vs, "spec.source names neither a PVC nor a VolumeSnapshotContent");
    const pvc = this.c.pvcs.get(ns, pvcName);
    const injected = vs.metadata.annotations?.[SNAPSHOT_ERROR_ANNOTATION] ?? pvc?.metadata.annotations?.[SNAPSHOT_ERROR_ANNOTATION];
    if (injected) return this.failSnapshot(vs, injected);
    if (!pvc) return this.failSnapshot(vs, `PersistentVolumeClaim ${ns}/${pvcName} not found`);
    const from = this.pvcPath(ns, pvcName);
    if (!from) return; // waits for the PVC to be bound, as the snapshotter does
    const cls = this.snapshotClassFor(vs);
    if (!cls) {
      return this.failSnapshot(vs, vs.spec.volumeSnapshotClassName
        ? `VolumeSnapshotClass ${vs.spec.volumeSnapshotClassName} not found`
        : `no default VolumeSnapshotClass for driver ${DRIVER}`);
    }
    if (cls.driver !== DRIVER) return this.failSnapshot(vs, `VolumeSnapshotClass ${cls.metadata.name} is for driver ${cls.driver}, not ${DRIVER}`);

    const contentName = `snapcontent-${vs.metadata.uid}`;
    const handle = `snap-${vs.metadata.uid}`;
    if (!existsSync(this.snapshotPath(handle))) await copyTreeAs(from, this.snapshotPath(handle));
    const size = await du(this.snapshotPath(handle));
    const pv = this.c.pvs.get(undefined, pvc.spec.volumeName ?? "");
    if (!this.c.contents.get(undefined, contentName)) {
      const content: VolumeSnapshotContent = {
        apiVersion: "snapshot.storage.k8s.io/v1",
        kind: "VolumeSnapshotContent",
        metadata: { name: contentName },
        spec: {
          driver: DRIVER,
          deletionPolicy: cls.deletionPolicy,
          source: { volumeHandle: pv?.spec.csi?.volumeHandle ?? "" },
          volumeSnapshotRef: ref,
          volumeSnapshotClassName: cls.metadata.name,
        },
      };
      await this.api.create(`${SNAP_API}/volumesnapshotcontents`, content).catch((e: unknown) => {
        if (!isAlreadyExists(e)) throw e;
      });
    }
    await this.api.patch(`${SNAP_API}/volumesnapshotcontents/${contentName}/status`, {
      status: { snapshotHandle: handle, readyToUse: true, restoreSize: size, creationTime: Date.now() * 1e6 },
    });
    await this.setSnapshotStatus(vs, { boundVolumeSnapshotContentName: contentName, readyToUse: true, restoreSize: String(size), creationTime: nowIso() });
    this.log("Created snapshot", { snapshot: `${ns}/${vs.metadata.name}`, content: contentName, handle, bytes: size });
  }

  /**
   * A content whose bound VolumeSnapshot is gone follows its deletion policy: Delete removes the content and the
   * storage snapshot; Retain keeps both, as the snapshot controller does.
   */
  private async content(content: Named<VolumeSnapshotContent>): Promise<void> {
    if (content.spec.driver !== DRIVER || content.metadata.deletionTimestamp) return;
    const ref = content.spec.volumeSnapshotRef;
    if (!ref.uid) return; // not bound yet (a pre-provisioned content waits for its snapshot)
    const vs = this.c.snapshots.get(ref.namespace, ref.name);
    if (vs && vs.metadata.uid === ref.uid) return;
    if (content.spec.deletionPolicy !== "Delete") return;
    await this.api.delete(`${SNAP_API}/volumesnapshotcontents/${content.metadata.name}`).catch((e: unknown) => {
      if (!isNotFound(e)) throw e;
    });
  }

  /** Called when a content object is gone: the Delete policy removes the storage snapshot with it. */
  async contentDeleted(content: Named<VolumeSnapshotContent>): Promise<void> {
    if (content.spec.driver !== DRIVER || content.spec.deletionPolicy !== "Delete") return;
    const handle = content.status?.snapshotHandle ?? content.spec.source.snapshotHandle;
    if (!handle) return;
    await rm(this.snapshotPath(handle), { recursive: true, force: true });
    this.log("Deleted storage snapshot", { content: content.metadata.name, handle });
  }
}

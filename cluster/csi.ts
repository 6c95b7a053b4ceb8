// The local CSI driver's place in the cluster: its name, its StorageClass, default VolumeSnapshotClass and CSIDriver
// object, and the directory behind a bound PVC. Volumes and snapshots themselves are made by the real
// external-provisioner, csi-snapshotter and snapshot-controller (cluster/storage.ts), which call the node agent's CSI
// server (cluster/csi-driver.ts); the node's kubelet publishes them into pods through the same server.
import { execFile } from "node:child_process";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { promisify } from "node:util";
import path from "node:path";
import type { KubeObject } from "../lib/k8s/informer.ts";
import type { RestClient } from "../lib/k8s/rest.ts";
import type { Named, Pv, Pvc, StorageClass } from "../lib/api/kube.ts";
import type { VolumeSnapshotClass } from "./types.ts";

export const DRIVER = "hostpath.csi.walle.local";
/** The local cluster's one node (cluster/node.ts), where the driver publishes its volumes: its node_id. */
export const NODE_NAME = "walle-node";
// The names csi-hostpath's deploy examples use, which the original Walle's examples name too.
export const STORAGE_CLASS = "csi-hostpath-sc";
export const SNAPSHOT_CLASS = "csi-hostpath-snapclass";
/**
 * Test hook: on a VolumeSnapshot, or on the PVC it snapshots, makes the driver's CreateSnapshot fail with this
 * message. The driver learns which VolumeSnapshot it is making from csi-snapshotter's --extra-create-metadata.
 */
export const SNAPSHOT_ERROR_ANNOTATION = "local.walle.dev/snapshot-error";

export const nowIso = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

/** Where the driver keeps its volumes, snapshots, state and socket, under a cluster's state directory. */
export function csiDirs(stateDir: string) {
  return {
    volumesDir: path.join(stateDir, "volumes"),
    snapshotsDir: path.join(stateDir, "snapshots"),
    stateFile: path.join(stateDir, "csi", "state.json"),
    socket: path.join(stateDir, "csi", "csi.sock"),
  };
}

/** The directory of a PV of the local driver: its volume handle under the volumes directory. */
export function volumeDirOf(stateDir: string, pv: Pv): string | undefined {
  return pv.spec.csi?.driver === DRIVER ? path.join(csiDirs(stateDir).volumesDir, pv.spec.csi.volumeHandle) : undefined;
}

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

/** Bytes of the regular files under a directory. */
export async function du(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(path.join(entry.parentPath, entry.name))).size;
  }
  return total;
}

/** The StorageClass (the default), the default VolumeSnapshotClass and the CSIDriver object of the local driver. */
export function storageObjects(): KubeObject[] {
  const storageClass: Named<StorageClass> = {
    apiVersion: "storage.k8s.io/v1",
    kind: "StorageClass",
    metadata: { name: STORAGE_CLASS, annotations: { "storageclass.kubernetes.io/is-default-class": "true" } },
    provisioner: DRIVER,
    reclaimPolicy: "Delete",
    volumeBindingMode: "Immediate",
    allowVolumeExpansion: false,
  };
  const snapshotClass: Named<VolumeSnapshotClass> = {
    apiVersion: "snapshot.storage.k8s.io/v1",
    kind: "VolumeSnapshotClass",
    metadata: { name: SNAPSHOT_CLASS, annotations: { "snapshot.storage.kubernetes.io/is-default-class": "true" } },
    driver: DRIVER,
    deletionPolicy: "Delete",
  };
  // No attach step (nothing to attach on one node), no pod info on mount, persistent volumes only.
  const csiDriver = {
    apiVersion: "storage.k8s.io/v1",
    kind: "CSIDriver",
    metadata: { name: DRIVER },
    spec: { attachRequired: false, podInfoOnMount: false, volumeLifecycleModes: ["Persistent"], fsGroupPolicy: "File" },
  };
  return [storageClass as KubeObject, snapshotClass as KubeObject, csiDriver as KubeObject];
}

/** The directory behind a PVC of the local driver, read from the API (its PV's volume handle); undefined until it is bound. */
export async function boundVolumeDir(api: RestClient, stateDir: string, namespace: string, name: string): Promise<string | undefined> {
  const pvc = await api.get<Pvc>(`/api/v1/namespaces/${namespace}/persistentvolumeclaims/${name}`);
  if (pvc.status?.phase !== "Bound" || !pvc.spec.volumeName) return undefined;
  return volumeDirOf(stateDir, await api.get<Pv>(`/api/v1/persistentvolumes/${pvc.spec.volumeName}`));
}

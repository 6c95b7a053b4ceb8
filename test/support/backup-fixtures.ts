// What the BackupJob tests on the local cluster share: a bound PVC holding files, a restic repository Secret,
// waiting for a BackupJob to settle, and the check that nothing Walle made for a backup is left behind.
import { chmod, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { expect, inject } from "vitest";
import type { BackupJobStatus } from "../../lib/api/backup-job.ts";
import type { BackupRestoreStatus } from "../../lib/api/backup-restore.ts";
import { boundVolumeDir, csiDirs } from "../../cluster/csi.ts";
import { readInventory } from "../../cluster/csi-driver.ts";
import { Label } from "../../lib/api/constants.ts";
import type { RestClient } from "../../lib/k8s/rest.ts";
import { admin, waitFor } from "./kube.ts";

/** The cluster a helper looks at: the shared test cluster unless a test runs one of its own. */
export interface On {
  readonly api: RestClient;
  readonly stateDir: string;
}
const shared = (): On => ({ api: admin(), stateDir: inject("clusterStateDir") });

export const SNAP = "/apis/snapshot.storage.k8s.io/v1";
export const PASSWORD = "correct horse battery staple";

export interface BackupJobObj {
  metadata: { name: string; namespace: string; uid: string; resourceVersion?: string };
  status?: BackupJobStatus;
}

/** A PVC that the local CSI driver binds, with `files` written into its volume. */
export async function pvcWithData(
  ns: string,
  name: string,
  files: Record<string, string | Uint8Array>,
  annotations: Record<string, string> = {},
): Promise<void> {
  await admin().create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name, annotations },
    spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
  });
  const dir = await volumeDir(ns, name);
  for (const [file, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await writeFile(path.join(dir, file), content);
    await chmod(path.join(dir, file), 0o644);
  }
}

/** A restic repository Secret as restic's docs describe it; the worker initialises the repository. */
export async function repositorySecret(ns: string, name: string, repo: string, password = PASSWORD): Promise<void> {
  await admin().create(`/api/v1/namespaces/${ns}/secrets`, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name },
    stringData: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: password, INITIALIZE_REPO: "true" },
  });
}

export interface BackupRestoreObj {
  metadata: { name: string; namespace: string };
  status?: BackupRestoreStatus;
}

/** Waits for one of Walle's runs to end (Finished or Failed) and to have cleaned up after itself. */
async function settledRun<T extends { status?: { phase?: string; conditions?: readonly { type: string; status: string }[] } }>(
  plural: string,
  ns: string,
  name: string,
  timeoutMs: number,
  on: On,
): Promise<T> {
  return waitFor(
    async () => {
      const run = await on.api.get<T>(`/apis/ros.io/v1/namespaces/${ns}/${plural}/${name}`);
      const cleaned = run.status?.conditions?.some((c) => c.type === "CleanedUp" && c.status === "True");
      return (run.status?.phase === "Finished" || run.status?.phase === "Failed") && cleaned ? run : undefined;
    },
    `${plural} ${ns}/${name} to settle`,
    timeoutMs,
  );
}

/** Waits for a BackupJob to end (Finished or Failed) and to have cleaned up after itself. */
export function settled(ns: string, name: string, timeoutMs = 90_000, on: On = shared()): Promise<BackupJobObj> {
  return settledRun("backupjobs", ns, name, timeoutMs, on);
}

/** Waits for a BackupRestore to end (Finished or Failed) and to have cleaned up after itself. */
export function settledRestore(ns: string, name: string, timeoutMs = 90_000, on: On = shared()): Promise<BackupRestoreObj> {
  return settledRun("backuprestores", ns, name, timeoutMs, on);
}

/** The host directory of a PVC's volume, once the PVC is Bound. */
export async function volumeDir(ns: string, pvc: string, on: On = shared()): Promise<string> {
  return waitFor(() => boundVolumeDir(on.api, on.stateDir, ns, pvc), `PVC ${ns}/${pvc} Bound`);
}

export async function names(pathname: string, labelSelector?: string, on: On = shared()): Promise<string[]> {
  const list = await on.api.get<{ items: { metadata: { name: string } }[] }>(pathname, labelSelector ? { labelSelector } : undefined);
  return list.items.map((i) => i.metadata.name);
}

export type Storage = Awaited<ReturnType<typeof readInventory>>;

/** The label on Walle's temporary children (a worker's Job, the PVC from a snapshot, a restore's staging PVC). */
const TEMPORARY = Label.BackupJobType;

/** The volumes and storage snapshots the local CSI driver holds, from its own state (not from the API). */
export const csiStorage = (on: On = shared()): Promise<Storage> => readInventory(csiDirs(on.stateDir).stateFile);

interface PvObj {
  spec: { csi?: { volumeHandle: string }; claimRef?: { namespace?: string; name?: string } };
  status?: { phase?: string };
}

/**
 * Storage the driver holds now and did not hold at `since`: every storage snapshot made since, and every volume made
 * since that no lasting PVC is bound to (a user's, or a restore's result; not one of Walle's temporaries). Empty when a backup or restore left nothing in
 * the storage itself, beyond the volumes it was asked to fill.
 */
export async function storageLeft(since: Storage, on: On = shared()): Promise<string[]> {
  const now = await csiStorage(on);
  const pvs = (await on.api.get<{ items: PvObj[] }>("/api/v1/persistentvolumes")).items;
  const users = new Set(
    (await on.api.get<{ items: { metadata: { namespace: string; name: string; labels?: Record<string, string> } }[] }>("/api/v1/persistentvolumeclaims")).items
      .filter((c) => c.metadata.labels?.[TEMPORARY] === undefined)
      .map((c) => `${c.metadata.namespace}/${c.metadata.name}`),
  );
  const kept = new Set(
    pvs
      .filter((pv) => pv.status?.phase === "Bound" && users.has(`${pv.spec.claimRef?.namespace}/${pv.spec.claimRef?.name}`))
      .map((pv) => pv.spec.csi?.volumeHandle),
  );
  return [
    ...now.snapshots.filter((id) => !since.snapshots.includes(id)).map((id) => `storage snapshot ${id}`),
    ...now.volumes.filter((id) => !since.volumes.includes(id) && !kept.has(id)).map((id) => `volume ${id}`),
  ];
}

/**
 * Nothing Walle made for a backup is left: no snapshot, content, PVC or Job, and, given the driver's storage from
 * before (`since`), no storage snapshot or volume in the CSI driver itself.
 */
export async function expectNoLeftovers(namespaces: string[], since?: Storage, on: On = shared()): Promise<void> {
  const walle = "app.kubernetes.io/created-by=walle";
  const left = async () => {
    const found: string[] = [];
    for (const ns of namespaces) {
      found.push(...(await names(`${SNAP}/namespaces/${ns}/volumesnapshots`, undefined, on)).map((n) => `VolumeSnapshot ${ns}/${n}`));
      found.push(...(await names(`/apis/batch/v1/namespaces/${ns}/jobs`, walle, on)).map((n) => `Job ${ns}/${n}`));
      found.push(...(await names(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, TEMPORARY, on)).map((n) => `PersistentVolumeClaim ${ns}/${n}`));
    }
    // Contents are cluster-scoped: only those of these namespaces' runs (another test's namespace deleted in the middle
    // of a backup leaves its moved content to the next tick's sweep, which is not this test's to judge).
    const owners = `${walle},${Label.OwnerNamespace} in (${namespaces.join(",")})`;
    found.push(...(await names(`${SNAP}/volumesnapshotcontents`, owners, on)).map((n) => `VolumeSnapshotContent ${n}`));
    if (since) found.push(...(await storageLeft(since, on)));
    return found;
  };
  // The garbage collector, the snapshot controller and the provisioner get a minute to finish; then what is left shows.
  await waitFor(async () => (await left()).length === 0, "nothing left", 60_000).catch(() => {});
  expect(await left()).toEqual([]);
}

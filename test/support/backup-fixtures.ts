// What the BackupJob tests on the local cluster share: a bound PVC holding files, a restic repository Secret,
// waiting for a BackupJob to settle, and the check that nothing Walle made for a backup is left behind.
import { chmod, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { inject } from "vitest";
import type { BackupJobStatus } from "../../lib/api/backup-job.ts";
import type { BackupRestoreStatus } from "../../lib/api/backup-restore.ts";
import { admin, waitFor } from "./kube.ts";

export const SNAP = "/apis/snapshot.storage.k8s.io/v1";
export const PASSWORD = "correct horse battery staple";

export interface BackupJobObj {
  metadata: { name: string; namespace: string; uid: string; resourceVersion?: string };
  status?: BackupJobStatus;
}

/** A PVC that the local CSI driver binds, with `files` written into its volume. */
export async function pvcWithData(ns: string, name: string, files: Record<string, string>, annotations: Record<string, string> = {}): Promise<void> {
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
async function settledRun<T extends { status?: { phase?: string; conditions?: readonly { type: string; status: string }[] } }>(plural: string, ns: string, name: string, timeoutMs: number): Promise<T> {
  return waitFor(async () => {
    const run = await admin().get<T>(`/apis/ros.io/v1/namespaces/${ns}/${plural}/${name}`);
    const cleaned = run.status?.conditions?.some((c) => c.type === "CleanedUp" && c.status === "True");
    return (run.status?.phase === "Finished" || run.status?.phase === "Failed") && cleaned ? run : undefined;
  }, `${plural} ${ns}/${name} to settle`, timeoutMs);
}

/** Waits for a BackupJob to end (Finished or Failed) and to have cleaned up after itself. */
export function settled(ns: string, name: string, timeoutMs = 90_000): Promise<BackupJobObj> {
  return settledRun("backupjobs", ns, name, timeoutMs);
}

/** Waits for a BackupRestore to end (Finished or Failed) and to have cleaned up after itself. */
export function settledRestore(ns: string, name: string, timeoutMs = 90_000): Promise<BackupRestoreObj> {
  return settledRun("backuprestores", ns, name, timeoutMs);
}

/** The host directory of a PVC's volume, once the PVC is Bound. */
export async function volumeDir(ns: string, pvc: string): Promise<string> {
  const p = await waitFor(async () => {
    const got = await admin().get<{ spec: { volumeName?: string }; status?: { phase?: string } }>(`/api/v1/namespaces/${ns}/persistentvolumeclaims/${pvc}`);
    return got.status?.phase === "Bound" ? got : undefined;
  }, `PVC ${ns}/${pvc} Bound`);
  return path.join(inject("clusterStateDir"), "volumes", p.spec.volumeName ?? "");
}

export async function names(pathname: string, labelSelector?: string): Promise<string[]> {
  const list = await admin().get<{ items: { metadata: { name: string } }[] }>(pathname, labelSelector ? { labelSelector } : undefined);
  return list.items.map((i) => i.metadata.name);
}

/** Nothing Walle made for a backup is left: no snapshot, content, PVC or Job. */
export async function expectNoLeftovers(namespaces: string[]): Promise<void> {
  await waitFor(async () => {
    for (const ns of namespaces) {
      if ((await names(`${SNAP}/namespaces/${ns}/volumesnapshots`)).length > 0) return false;
      if ((await names(`/apis/batch/v1/namespaces/${ns}/jobs`, "app.kubernetes.io/created-by=walle")).length > 0) return false;
      if ((await names(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, "app.kubernetes.io/created-by=walle")).length > 0) return false;
    }
    return (await names(`${SNAP}/volumesnapshotcontents`, "app.kubernetes.io/created-by=walle")).length === 0;
  }, "no leftover VolumeSnapshots, contents, PVCs or Jobs", 60_000);
}

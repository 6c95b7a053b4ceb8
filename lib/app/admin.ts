// What an administrator asks of Walle from a workstation (kubectl walle), as that administrator: every request
// goes to the API server with their own credentials, so their RBAC, and the tenant guard, decide what they may
// do. Back up a PVC now, restore one, follow either to its end, and read the state of everything.
import { randomUUID } from "node:crypto";
import { BackupJobPhase } from "../api/backup-job.ts";
import { BackupRestorePhase } from "../api/backup-restore.ts";
import type { Progress } from "../api/common.ts";
import { INSTALL_NAMESPACE } from "../api/constants.ts";
import { overview, type JobSeen, type Overview, type ScheduleSeen, type SetSeen } from "../core/overview.ts";
import { forcedBackupJob, forcedBackupRestore, isRefusal, type Refusal } from "../core/requests.ts";
import { Informer, type KubeObject } from "../k8s/informer.ts";
import { collectionPath, objectPath } from "../k8s/paths.ts";
import { ApiError, type RestClient } from "../k8s/rest.ts";

/** A request Walle's rules or the API server refused, in words that name what to change. */
export class RefusedError extends Error {
  override name = "RefusedError";
}

const refused = (r: Refusal): RefusedError => new RefusedError(r.refused);

/** The API server's answer to a create, as the reason a user acts on. */
function explain(err: unknown, what: string): Error {
  if (!(err instanceof ApiError)) return err instanceof Error ? err : new Error(String(err));
  if (err.code === 403) return new RefusedError(`${what}: ${err.message}`);
  if (err.code === 422 || err.code === 400) return new RefusedError(`${what} was refused: ${err.message}`);
  return new Error(`${what}: ${err.message}`, { cause: err });
}

export interface Created {
  readonly kind: "BackupJob" | "BackupRestore";
  readonly namespace: string;
  readonly name: string;
}

interface PvcSeen {
  metadata: { name: string };
  spec?: { storageClassName?: string; resources?: { requests?: { storage?: string } } };
  status?: { capacity?: { storage?: string } };
}

async function getPvc(api: RestClient, namespace: string, name: string): Promise<PvcSeen> {
  try {
    return await api.get<PvcSeen>(objectPath("PersistentVolumeClaim", name, namespace));
  } catch (err) {
    if (err instanceof ApiError && err.code === 404) throw new RefusedError(`PersistentVolumeClaim ${namespace}/${name} not found: check the name and -n`);
    throw explain(err, `Reading PersistentVolumeClaim ${namespace}/${name}`);
  }
}

/** A BackupJob for `pvc` into the repository Secret `repository` of its namespace, created now. */
export async function requestBackup(api: RestClient, r: { namespace: string; pvc: string; repository: string }): Promise<Created> {
  await getPvc(api, r.namespace, r.pvc);
  const made = forcedBackupJob({ namespace: r.namespace, pvc: r.pvc, repository: { name: r.repository, namespace: r.namespace } }, randomUUID(), { installNamespace: INSTALL_NAMESPACE });
  if (isRefusal(made)) throw refused(made);
  const name = made.metadata.name ?? "";
  await api.create(collectionPath("BackupJob", r.namespace), made).catch((err: unknown) => {
    throw explain(err, `Creating BackupJob ${r.namespace}/${name}`);
  });
  return { kind: "BackupJob", namespace: r.namespace, name };
}

export interface RestoreAsked {
  readonly namespace: string;
  readonly pvc: string;
  readonly repository: string;
  /** A new PVC to restore into, made like `pvc` (its size and StorageClass); else `pvc` itself. */
  readonly to?: string;
  /** In place while pods mount the PVC. */
  readonly force?: boolean;
  readonly snapshot?: string;
  readonly before?: string;
  readonly paths?: readonly string[];
}

interface PodSeen {
  metadata: { name: string };
  spec?: { volumes?: { persistentVolumeClaim?: { claimName?: string } }[] };
  status?: { phase?: string };
}

/** The pods of `namespace` that mount `pvc` and have not ended. */
export async function podsMounting(api: RestClient, namespace: string, pvc: string): Promise<string[]> {
  const pods = await api.get<{ items: PodSeen[] }>(collectionPath("Pod", namespace)).catch((err: unknown) => {
    throw explain(err, `Listing the pods of namespace ${namespace} (to see whether any mounts ${pvc})`);
  });
  return pods.items
    .filter((p) => p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed" && (p.spec?.volumes ?? []).some((v) => v.persistentVolumeClaim?.claimName === pvc))
    .map((p) => p.metadata.name)
    .sort();
}

/** A BackupRestore of `pvc`'s newest snapshot (or the one asked for), into a new PVC or into `pvc` itself. */
export async function requestRestore(api: RestClient, r: RestoreAsked): Promise<Created> {
  const source = await getPvc(api, r.namespace, r.pvc);
  if (!r.to && !r.force) {
    const mounting = await podsMounting(api, r.namespace, r.pvc);
    if (mounting.length > 0) {
      throw new RefusedError(
        `PVC ${r.namespace}/${r.pvc} is mounted by ${mounting.length === 1 ? "pod" : "pods"} ${mounting.join(", ")}: restoring under a running application can corrupt its data. ` +
          "Scale it down first, restore into a new PVC with --to, or pass --force.",
      );
    }
  }
  const size = source.status?.capacity?.storage ?? source.spec?.resources?.requests?.storage;
  if (r.to && !size) throw new RefusedError(`PVC ${r.namespace}/${r.pvc} has no size to give ${r.to}`);
  const which = r.snapshot ? { snapshotId: r.snapshot } : r.before ? { latestBefore: { pvc: r.pvc, time: r.before } } : { latest: { pvc: r.pvc } };
  const target = r.to
    ? { newPvc: { name: r.to, size: size ?? "", accessModes: ["ReadWriteOnce" as const], ...(source.spec?.storageClassName ? { storageClassName: source.spec.storageClassName } : {}) } }
    : { existingPvc: r.pvc, ...(r.force ? { allowInUse: true } : {}) };
  const made = forcedBackupRestore(
    { namespace: r.namespace, repository: { name: r.repository, namespace: r.namespace }, source: which, target, ...(r.paths?.length ? { include: [...r.paths] } : {}) },
    randomUUID(),
    { installNamespace: INSTALL_NAMESPACE },
  );
  if (isRefusal(made)) throw refused(made);
  const name = made.metadata.name ?? "";
  await api.create(collectionPath("BackupRestore", r.namespace), made).catch((err: unknown) => {
    throw explain(err, `Creating BackupRestore ${r.namespace}/${name}`);
  });
  return { kind: "BackupRestore", namespace: r.namespace, name };
}

/** A BackupJob or BackupRestore as `follow` sees it. */
export interface Followed extends KubeObject {
  status?: { phase?: string; progress?: Progress; snapshotId?: string; conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

const ended = (o: Followed) => o.status?.phase === BackupJobPhase.Finished || o.status?.phase === BackupJobPhase.Failed || o.status?.phase === BackupRestorePhase.Failed;

/**
 * Watches one BackupJob or BackupRestore (list+watch, as kubectl wait does) and calls `onChange` with each state,
 * until it has Finished or Failed, or `timeoutMs` has passed; the last state seen, and whether it ended.
 */
export async function follow(api: RestClient, c: Created, onChange: (o: Followed) => void, timeoutMs: number): Promise<{ last?: Followed; ended: boolean }> {
  let last: Followed | undefined;
  let done!: (v: boolean) => void;
  const finished = new Promise<boolean>((resolve) => (done = resolve));
  let failure: unknown;
  const informer = new Informer<Followed>(
    api,
    collectionPath(c.kind, c.namespace),
    (type, obj) => {
      if (type === "delete") {
        failure = new Error(`${c.kind} ${c.namespace}/${c.name} was deleted`);
        done(false);
        return;
      }
      last = obj;
      onChange(obj);
      if (ended(obj)) done(true);
    },
    { fieldSelector: `metadata.name=${c.name}` },
    (err) => {
      if (err instanceof ApiError && (err.code === 401 || err.code === 403)) {
        failure = explain(err, `Watching ${c.kind} ${c.namespace}/${c.name}`);
        done(false);
      }
    },
  );
  const timer = setTimeout(() => done(false), timeoutMs);
  try {
    await informer.start();
    const result = await finished;
    if (failure) throw failure instanceof Error ? failure : new Error(String(failure));
    return { ...(last ? { last } : {}), ended: result };
  } finally {
    clearTimeout(timer);
    informer.stop();
  }
}

export interface StatusReport extends Overview {
  /** What the caller's RBAC would not list, named instead of left out. */
  readonly hidden: readonly string[];
  /** The objects read, for -o json|yaml. */
  readonly objects: readonly unknown[];
}

/** Schedules and sets (cluster-wide) and the BackupJobs of `namespace` (or every namespace), as far as RBAC lets. */
export async function readStatus(api: RestClient, namespace: string | undefined): Promise<StatusReport> {
  const hidden: string[] = [];
  const listed = async <T>(kind: "BackupSchedule" | "BackupSet" | "BackupJob", ns?: string): Promise<T[]> => {
    try {
      return (await api.get<{ items: T[] }>(collectionPath(kind, ns))).items;
    } catch (err) {
      if (err instanceof ApiError && err.code === 403) {
        hidden.push(`${kind}s${ns ? ` in ${ns}` : ""}: ${err.message}`);
        return [];
      }
      throw explain(err, `Listing ${kind}s`);
    }
  };
  const [schedules, sets, jobs] = await Promise.all([listed<ScheduleSeen>("BackupSchedule"), listed<SetSeen>("BackupSet"), listed<JobSeen>("BackupJob", namespace)]);
  const withKind = (kind: string) => (o: object) => ({ apiVersion: "ros.io/v1", kind, ...o });
  return { ...overview({ schedules, sets, jobs }), hidden, objects: [...schedules.map(withKind("BackupSchedule")), ...sets.map(withKind("BackupSet")), ...jobs.map(withKind("BackupJob"))] };
}

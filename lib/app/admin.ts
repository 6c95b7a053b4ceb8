// What an administrator asks of Walle from a workstation (kubectl walle), as that administrator: every request
// goes to the API server with their own credentials, so their RBAC, and the tenant guard, decide what they may
// do. Back up a PVC now or run a schedule now, restore a PVC, follow any of them to its end, and read the state of
// everything.
import { randomUUID } from "node:crypto";
import type { Progress } from "../api/common.ts";
import { CREATED_BY, INSTALL_NAMESPACE, JobType, Label, WalleAnnotation } from "../api/constants.ts";
import { isTerminal } from "../core/backup-job.ts";
import { isSettledSet } from "../core/backup-set.ts";
import { workerActions, type Manifest } from "../core/builders.ts";
import { boundedName, shortHash } from "../core/names.ts";
import { jobOutcome, type Job, type Pod } from "../core/objects.ts";
import { noResult, workerReport } from "../core/worker-result.ts";
import { overview, type JobSeen, type Overview, type ScheduleSeen, type SetSeen } from "../core/overview.ts";
import { forcedBackupJob, forcedBackupRestore, isRefusal, type Refusal } from "../core/requests.ts";
import { performAll } from "../k8s/actions.ts";
import { Informer, type KubeObject } from "../k8s/informer.ts";
import { collectionPath, objectPath } from "../k8s/paths.ts";
import { ApiError, type RestClient } from "../k8s/rest.ts";
import type { SnapshotEntry } from "../restic/result.ts";

/** A request Walle's rules or the API server refused, in words that name what to change. */
export class RefusedError extends Error {
  override name = "RefusedError";
}

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

/** Creates what a forced-request builder made, or says why it refused or the API server did. */
async function createMade(api: RestClient, kind: Created["kind"], namespace: string, made: Manifest | Refusal): Promise<Created> {
  if (isRefusal(made)) throw new RefusedError(made.refused);
  const name = made.metadata.name ?? "";
  await api.create(collectionPath(kind, namespace), made).catch((err: unknown) => {
    throw explain(err, `Creating ${kind} ${namespace}/${name}`);
  });
  return { kind, namespace, name };
}

/** A BackupJob for `pvc` into the repository Secret `repository` of its namespace, created now. */
export async function requestBackup(api: RestClient, r: { namespace: string; pvc: string; repository: string }): Promise<Created> {
  await getPvc(api, r.namespace, r.pvc);
  const made = forcedBackupJob({ namespace: r.namespace, pvc: r.pvc, repository: { name: r.repository, namespace: r.namespace } }, randomUUID(), {
    installNamespace: INSTALL_NAMESPACE,
  });
  return createMade(api, "BackupJob", r.namespace, made);
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
    .filter(
      (p) => p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed" && (p.spec?.volumes ?? []).some((v) => v.persistentVolumeClaim?.claimName === pvc),
    )
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
    ? {
        newPvc: {
          name: r.to,
          size: size ?? "",
          accessModes: ["ReadWriteOnce" as const],
          ...(source.spec?.storageClassName ? { storageClassName: source.spec.storageClassName } : {}),
        },
      }
    : { existingPvc: r.pvc, ...(r.force ? { allowInUse: true } : {}) };
  const made = forcedBackupRestore(
    {
      namespace: r.namespace,
      repository: { name: r.repository, namespace: r.namespace },
      source: which,
      target,
      ...(r.paths?.length ? { include: [...r.paths] } : {}),
    },
    randomUUID(),
    { installNamespace: INSTALL_NAMESPACE },
  );
  return createMade(api, "BackupRestore", r.namespace, made);
}

/** A BackupJob or BackupRestore as `follow` sees it. */
export interface Followed extends KubeObject {
  status?: { phase?: string; progress?: Progress; snapshotId?: string; conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

/**
 * Watches the object `name` of a collection (list+watch, as kubectl wait does), calling `seen` with each state
 * until it says the object has ended or `timeoutMs` has passed; the last state, and whether it ended. A deleted
 * object, or a watch RBAC refuses, is an error.
 */
async function watchUntil<T extends KubeObject>(
  api: RestClient,
  collection: string,
  name: string,
  timeoutMs: number,
  seen: (o: T) => boolean,
): Promise<{ last?: T; ended: boolean }> {
  let last: T | undefined;
  let settle!: (ended: boolean) => void;
  let failure: unknown;
  const ended = new Promise<boolean>((resolve) => (settle = resolve));
  const informer = new Informer<T>(
    api,
    collection,
    (type, obj) => {
      if (type === "delete") {
        failure = new Error(`${collection}/${name} was deleted`);
        settle(false);
        return;
      }
      last = obj;
      if (seen(obj)) settle(true);
    },
    { fieldSelector: `metadata.name=${name}` },
    (err) => {
      if (err instanceof ApiError && (err.code === 401 || err.code === 403)) {
        failure = explain(err, `Watching ${collection}/${name}`);
        settle(false);
      }
    },
  );
  const timer = setTimeout(() => settle(false), timeoutMs);
  try {
    await informer.start();
    const result = await ended;
    if (failure) throw failure instanceof Error ? failure : new Error(String(failure));
    return { ...(last ? { last } : {}), ended: result };
  } finally {
    clearTimeout(timer);
    informer.stop();
  }
}

/** Follows one BackupJob or BackupRestore, calling `onChange` with each state, until it Finished or Failed. */
export function follow(api: RestClient, c: Created, onChange: (o: Followed) => void, timeoutMs: number): Promise<{ last?: Followed; ended: boolean }> {
  return watchUntil<Followed>(api, collectionPath(c.kind, c.namespace), c.name, timeoutMs, (o) => {
    onChange(o);
    return isTerminal(o.status?.phase);
  });
}

export interface ScheduleRunAnswer {
  /** The BackupSet the run started; absent when it started none (the message says why). */
  readonly backupSet?: string;
  readonly message: string;
}

/**
 * Runs BackupSchedule `schedule` now: sets its ros.io/backup-requested annotation to `requestId` (as Flux's
 * `reconcile.fluxcd.io/requestedAt`; RBAC: patch backupschedules), which Walle's reconcile function answers at
 * once (the tick, should that event be lost), and waits for the answer in the schedule's status. Undefined when
 * none came within `timeoutMs`: the request stays, and the next tick answers it.
 */
export async function requestScheduleRun(api: RestClient, schedule: string, requestId: string, timeoutMs: number): Promise<ScheduleRunAnswer | undefined> {
  const path = objectPath("BackupSchedule", schedule);
  await api.patch(path, { metadata: { annotations: { [WalleAnnotation.BackupRequested]: requestId } } }).catch((err: unknown) => {
    if (err instanceof ApiError && err.code === 404) throw new RefusedError(`BackupSchedule ${schedule} not found: kubectl get backupschedules lists them`);
    throw explain(err, `Asking BackupSchedule ${schedule} for a run (the ${WalleAnnotation.BackupRequested} annotation)`);
  });
  const { last, ended } = await watchUntil<ScheduleAnswering>(
    api,
    collectionPath("BackupSchedule"),
    schedule,
    timeoutMs,
    (o) => o.status?.lastBackupRequest?.id === requestId,
  );
  const answer = last?.status?.lastBackupRequest;
  if (!ended || !answer) return undefined;
  return { ...(answer.backupSet ? { backupSet: answer.backupSet } : {}), message: answer.message ?? "" };
}

interface ScheduleAnswering extends KubeObject {
  status?: { lastBackupRequest?: { id?: string; backupSet?: string; message?: string } };
}

/** A BackupSet as `followSet` sees it. */
export interface SetFollowed extends KubeObject {
  status?: { state?: string; completions?: string };
}

/** Follows a BackupSet, calling `onChange` with each state, until it Finished or FinishedWithFailures. */
export function followSet(
  api: RestClient,
  name: string,
  onChange: (o: SetFollowed) => void,
  timeoutMs: number,
): Promise<{ last?: SetFollowed; ended: boolean }> {
  return watchUntil<SetFollowed>(api, collectionPath("BackupSet"), name, timeoutMs, (o) => {
    onChange(o);
    return isSettledSet(o.status);
  });
}

/** The failed BackupJobs of a set, newest failure first; undefined when RBAC does not let the caller list them. */
export async function failedJobsOf(api: RestClient, set: string): Promise<Overview["failedJobs"] | undefined> {
  try {
    const jobs = await api.get<{ items: JobSeen[] }>(collectionPath("BackupJob"), { labelSelector: `${Label.BackupSet}=${set}` });
    return overview({ schedules: [], sets: [], jobs: jobs.items }).failedJobs;
  } catch (err) {
    if (err instanceof ApiError && err.code === 403) return undefined;
    throw explain(err, `Listing the BackupJobs of BackupSet ${set}`);
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
  const [schedules, sets, jobs] = await Promise.all([
    listed<ScheduleSeen>("BackupSchedule"),
    listed<SetSeen>("BackupSet"),
    listed<JobSeen>("BackupJob", namespace),
  ]);
  const withKind = (kind: string) => (o: object) => ({ apiVersion: "ros.io/v1", kind, ...o });
  return {
    ...overview({ schedules, sets, jobs }),
    hidden,
    objects: [...schedules.map(withKind("BackupSchedule")), ...sets.map(withKind("BackupSet")), ...jobs.map(withKind("BackupJob"))],
  };
}

export interface SnapshotsAsked {
  readonly namespace: string;
  readonly pvc: string;
  readonly repository: string;
  /** The worker image (Walle's, of this version, unless told). */
  readonly workerImage: string;
  readonly timeoutMs: number;
}

export interface SnapshotsListed {
  readonly message: string;
  readonly snapshots: readonly SnapshotEntry[];
  readonly total: number;
}

/**
 * A PVC's snapshots, newest first: a short worker Job in the namespace (the repository Secret's) lists them and
 * reports them in its result, so the repository's password never leaves the cluster. The Job is deleted after.
 */
export async function listSnapshots(api: RestClient, r: SnapshotsAsked): Promise<SnapshotsListed> {
  const name = boundedName(["walle-snapshots", r.pvc, shortHash(randomUUID(), 6)]);
  const config = {
    installNamespace: INSTALL_NAMESPACE,
    clusterName: "",
    workerImage: r.workerImage,
    snapClassMappings: [],
    workerDeadlineSeconds: Math.ceil(r.timeoutMs / 1000),
    snapshotTimeoutSeconds: 0,
    workerBackoffLimit: 0,
    maxWorkersPerRepository: 1,
  };
  const actions = workerActions({
    metadata: { name, namespace: r.namespace, labels: { [Label.CreatedBy]: CREATED_BY, [Label.BackupJobType]: JobType.Snapshots } },
    config,
    command: JobType.Snapshots,
    repositorySecret: r.repository,
    env: { PVC_NAME: r.pvc, PVC_NAMESPACE: r.namespace },
  });
  try {
    await performAll(api, actions);
  } catch (err) {
    throw explain(err instanceof Error && err.cause ? err.cause : err, `Starting worker Job ${r.namespace}/${name} to list the snapshots`);
  }
  try {
    const { ended: done, last } = await watchUntil<Job & KubeObject>(
      api,
      collectionPath("Job", r.namespace),
      name,
      r.timeoutMs,
      (job) => jobOutcome(job) !== undefined,
    );
    if (!done || !last) throw new Error(`worker Job ${r.namespace}/${name} did not end within ${Math.round(r.timeoutMs / 1000)} s`);
    const pods = await api.get<{ items: Pod[] }>(collectionPath("Pod", r.namespace), { labelSelector: `job-name=${name}` });
    // The result of the Job's own pod only, as for a backup (lib/core/worker-result.ts).
    const report = workerReport(last, pods.items);
    const result = report.result;
    if (!result)
      throw new Error(
        noResult(report, { namespace: r.namespace, name }) ??
          `worker Job ${r.namespace}/${name} failed: ${report.message ?? "its pod has no termination message"}`,
      );
    if (result.outcome !== "Succeeded") throw new RefusedError(`listing the snapshots failed (${result.reason}): ${result.message}`);
    const snapshots = result.snapshots ?? [];
    return { message: result.message, snapshots, total: result.snapshotsTotal ?? snapshots.length };
  } finally {
    await api.delete(objectPath("Job", name, r.namespace), { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Background" }).catch(() => {});
  }
}

// Which of a repository's locks belong to Walle workers that are gone, decided from the locks alone.
//
// restic calls a lock stale only when it is 30 minutes old, or when the host that asks is the host that holds it
// and the holder's PID is gone, and even a stale lock keeps others out until `restic unlock` removes it (restic
// 0.18's checkForOtherLocks does not skip stale ones). Neither rule helps with a worker pod killed mid-run
// (SIGKILL, OOM, a lost node): the next pod has another PID namespace, so a killed backup's lock keeps every prune
// out of the repository for at least half an hour, a killed prune's exclusive one every backup. What Walle knows
// instead:
//
// - Each worker pod's hostname names its Job and its cluster (workerHostname). The Job controller starts a Job's
//   next pod only once the previous one has failed for good (podReplacementPolicy Failed), so a lock with this
//   pod's own hostname is an earlier attempt's.
// - The tick starts a prune at a moment when no worker Job of the cluster is active, and says when it looked
//   (STALE_LOCKS_BEFORE): a lock of this cluster's workers taken before then belongs to a process that has ended,
//   since restic removes its lock when it exits any other way. A worker started since takes its lock later.
//
// Another cluster's workers, and people, have hostnames this cluster never gives, so their locks always stay.
import { createHash } from "node:crypto";
import { z } from "zod";

/** The lock file as `restic cat lock <id>` prints it. */
export const ResticLock = z.object({
  time: z.string(),
  exclusive: z.boolean().default(false),
  hostname: z.string(),
  username: z.string().optional(),
  pid: z.number().optional(),
});
export type ResticLock = z.infer<typeof ResticLock>;

const HOSTNAME_LIMIT = 63;
const JOB_HASH = 6;
const CLUSTER_HASH = 8;

const hash = (text: string, length: number) => createHash("sha256").update(text).digest("hex").slice(0, length);

/** The cluster's part of its workers' hostnames: the same cluster_name its snapshots carry as their host. */
const clusterTag = (clusterName: string) => hash(`walle-cluster:${clusterName}`, CLUSTER_HASH);

/**
 * The hostname of every pod of the worker Job `jobName` (a DNS label, as a pod's `spec.hostname` must be): the Job's
 * name as far as it fits, a hash of the whole name, and the cluster's tag. restic records it in each lock.
 */
export function workerHostname(clusterName: string, jobName: string): string {
  const room = HOSTNAME_LIMIT - JOB_HASH - CLUSTER_HASH - 2;
  const readable = jobName
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .slice(0, room)
    .replace(/-+$/, "");
  return `${readable}-${hash(jobName, JOB_HASH)}-${clusterTag(clusterName)}`;
}

/** Whether `hostname` is one workerHostname gives in the cluster `clusterName`. */
export function isWorkerHostname(clusterName: string, hostname: string): boolean {
  return new RegExp(`^walle-[a-z0-9-]*-[0-9a-f]{${JOB_HASH}}-${clusterTag(clusterName)}$`).test(hostname);
}

export interface LockEvidence {
  readonly clusterName: string;
  /** This pod's hostname: locks with it are an earlier attempt's of this Job. */
  readonly ownHostname: string;
  /** When the tick saw no worker Job of the cluster active; absent unless the tick vouches for it. */
  readonly staleBefore?: Date;
}

export interface LockJudgement {
  readonly id: string;
  readonly lock?: ResticLock;
  readonly stale: boolean;
  readonly why: string;
}

/** One lock judged; a lock that could not be read is kept, as restic would keep it. */
export function judgeLock(id: string, lock: ResticLock | undefined, e: LockEvidence): LockJudgement {
  if (!lock) return { id, stale: false, why: "its content could not be read" };
  const kind = lock.exclusive ? "exclusive lock" : "lock";
  const held = `${kind} of ${lock.hostname}${lock.pid === undefined ? "" : ` (PID ${lock.pid})`} from ${lock.time}`;
  if (!isWorkerHostname(e.clusterName, lock.hostname)) return { id, lock, stale: false, why: `the ${held} is not a Walle worker's of this cluster` };
  if (lock.hostname === e.ownHostname) return { id, lock, stale: true, why: `the ${held} is an earlier attempt's of this worker Job` };
  const taken = Date.parse(lock.time);
  if (e.staleBefore && Number.isFinite(taken) && taken < e.staleBefore.getTime()) {
    return { id, lock, stale: true, why: `the ${held} was taken before ${e.staleBefore.toISOString()}, when no Walle worker was running` };
  }
  return { id, lock, stale: false, why: `the ${held} may belong to a worker that still runs` };
}

/**
 * restic removes locks only all at once (`unlock --remove-all`), so Walle removes them only when every lock the
 * repository holds is stale; otherwise it removes none, and restic's own wait and message take over.
 */
export function unlockPlan(judged: readonly LockJudgement[]): { removeAll: boolean; stale: LockJudgement[]; kept: LockJudgement[] } {
  const stale = judged.filter((j) => j.stale);
  const kept = judged.filter((j) => !j.stale);
  return { removeAll: stale.length > 0 && kept.length === 0, stale, kept };
}

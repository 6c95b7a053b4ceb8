// What a worker Job says, read the same way for a backup and a restore: the Job's outcome from the job
// controller, the newest pod, and the worker's result from that pod's termination message.
import { decodeResult, type WorkerResult } from "../restic/result.ts";
import type { Read } from "./decision.ts";
import { jobOutcome, type Job, type Pod } from "./objects.ts";

export interface WorkerReport {
  /** Complete or Failed once the job controller has finished the Job; undefined while it runs. */
  readonly outcome: "Complete" | "Failed" | undefined;
  /** The newest pod of the Job. */
  readonly pod: Pod | undefined;
  /** The worker container's termination message, as Kubernetes kept it. */
  readonly message: string | undefined;
  /** The message decoded as the worker's result, when it is one. */
  readonly result: WorkerResult | undefined;
}

export function latestPod(pods: readonly Pod[]): Pod | undefined {
  return [...pods].sort((a, b) => (a.metadata.creationTimestamp ?? "").localeCompare(b.metadata.creationTimestamp ?? "")).at(-1);
}

export function workerReport(job: Job, pods: readonly Pod[]): WorkerReport {
  const pod = latestPod(pods);
  const message = pod?.status?.containerStatuses?.find((c) => c.name === "worker")?.state?.terminated?.message;
  const decoded = message ? decodeResult(message) : undefined;
  return { outcome: jobOutcome(job), pod, message, result: decoded?.ok ? decoded.result : undefined };
}

/**
 * The read of a worker Job's pods, once the Job has ended: the worker's result is in its pod's termination
 * message. Before that the Job's own counts say all a run needs.
 */
export function workerPodsRead(job: Job | null | undefined, namespace: string, jobName: string): Read | undefined {
  return job && jobOutcome(job) !== undefined ? { list: "Pod", namespace, labelSelector: `job-name=${jobName}` } : undefined;
}

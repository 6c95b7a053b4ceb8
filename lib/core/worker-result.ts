// What a worker Job says, read the same way for a backup and a restore: the Job's outcome from the job
// controller, the newest of the Job's own pods, and the worker's result from that pod's termination message.
//
// Only the Job's own pod speaks for it (docs/security.md, "A forged result"): anyone who may create pods in the
// worker's namespace can make one labelled job-name=<job>, even one with the Job as its controller, whose
// termination message says whatever they like. A pod counts only when the Job is its controller (by uid), its worker
// container runs what the Job's template says (image, command, args, env, envFrom, working directory, termination
// message path, exactly), with the template's mounts of the template's volumes (a mutating webhook may add others),
// and nothing was added to it that could write the worker's termination message (an ephemeral container, a shared
// process namespace, a lifecycle hook). Its security context is not compared: admission such as OpenShift's changes
// it, and a pod that runs the real worker on the real volume reports the truth whatever user it runs as.
import { isDeepStrictEqual } from "node:util";
import { decodeResult, type WorkerResult } from "../restic/result.ts";
import type { Read } from "./decision.ts";
import { WORKER_CONTAINER } from "./builders.ts";
import { jobOutcome, type Job, type Pod } from "./objects.ts";

export interface WorkerReport {
  /** Complete or Failed once the job controller has finished the Job; undefined while it runs. */
  readonly outcome: "Complete" | "Failed" | undefined;
  /** The newest of the Job's own pods. */
  readonly pod: Pod | undefined;
  /** The worker container's termination message, as Kubernetes kept it. */
  readonly message: string | undefined;
  /** The message decoded as the worker's result, when it is one. */
  readonly result: WorkerResult | undefined;
  /** Pods labelled as the Job's that are not its own, whose word was not taken. */
  readonly ignoredPods: readonly string[];
}

/** The fields of the worker container that decide what runs in it and where its termination message comes from. */
const TRUSTED_FIELDS = ["image", "command", "args", "env", "envFrom", "lifecycle", "terminationMessagePath", "workingDir"] as const;

/** Whether every item of `some` is in `all`, as it is. */
const within = (some: unknown, all: unknown): boolean =>
  (Array.isArray(some) ? some : []).every((item: unknown) => (Array.isArray(all) ? all : []).some((other: unknown) => isDeepStrictEqual(item, other)));

interface ContainerLike {
  readonly name: string;
  readonly [field: string]: unknown;
}

/** The fields of a pod spec (or a Job's pod template) that say whose result its worker container leaves. */
interface PodSpecLike {
  readonly containers?: readonly ContainerLike[];
  readonly volumes?: readonly unknown[];
  readonly ephemeralContainers?: readonly unknown[];
  readonly shareProcessNamespace?: boolean;
}

function workerContainer(spec: PodSpecLike | undefined): ContainerLike | undefined {
  return spec?.containers?.find((c) => c.name === WORKER_CONTAINER);
}

/** Why a pod does not speak for the Job, or undefined when it is the Job's own. */
function notJobsOwnPod(job: Job, pod: Pod): string | undefined {
  const uid = job.metadata?.uid;
  const controller = pod.metadata?.ownerReferences?.find((o) => o.controller === true);
  if (!uid || controller?.kind !== "Job" || controller.uid !== uid) return "its controller is not the Job";
  const spec = pod.spec as PodSpecLike | undefined;
  if (spec?.ephemeralContainers?.length) return "it has ephemeral containers";
  if (spec?.shareProcessNamespace) return "it shares its process namespace";
  const template = job.spec?.template.spec as PodSpecLike | undefined;
  const expected = workerContainer(template);
  const actual = workerContainer(spec);
  if (!expected || !actual) return "it has no worker container";
  if (actual.lifecycle !== undefined) return "its worker container has a lifecycle hook";
  const differs = TRUSTED_FIELDS.find((f) => !isDeepStrictEqual(actual[f], expected[f]));
  if (differs) return `its worker container's ${differs} is not the Job's`;
  if (!within(expected.volumeMounts, actual.volumeMounts)) return "its worker container does not mount what the Job's does";
  if (!within(template?.volumes, spec?.volumes)) return "its volumes are not the Job's";
  return undefined;
}

export function latestPod(pods: readonly Pod[]): Pod | undefined {
  return [...pods].sort((a, b) => (a.metadata.creationTimestamp ?? "").localeCompare(b.metadata.creationTimestamp ?? "")).at(-1);
}

export function workerReport(job: Job, pods: readonly Pod[]): WorkerReport {
  const own: Pod[] = [];
  const ignoredPods: string[] = [];
  for (const p of pods) {
    const why = notJobsOwnPod(job, p);
    if (why === undefined) own.push(p);
    else ignoredPods.push(`${p.metadata.name ?? "(unnamed)"}: ${why}`);
  }
  const pod = latestPod(own);
  const message = pod?.status?.containerStatuses?.find((c) => c.name === WORKER_CONTAINER)?.state?.terminated?.message;
  const decoded = message ? decodeResult(message) : undefined;
  return { outcome: jobOutcome(job), pod, message, result: decoded?.ok ? decoded.result : undefined, ignoredPods };
}

/**
 * Why a Job that completed still did not succeed: a Job is Complete only by its pods' exit codes, and a result
 * is what a backup or restore reports, so a completed Job without one (or with its pods' word not taken) is a
 * failure, never a success. Undefined when the report says the run succeeded.
 */
export function noResult(report: WorkerReport, job: { namespace: string; name: string }): string | undefined {
  if (report.outcome !== "Complete" || report.result) return undefined;
  return [
    `Worker Job ${job.namespace}/${job.name} completed, but no pod of its own left a result.`,
    ...(report.ignoredPods.length ? [`Not taken: ${report.ignoredPods.join("; ")}.`] : []),
    ...(report.message ? [`Its termination message is not a worker result: ${report.message.slice(0, 200)}`] : []),
  ].join(" ");
}

/**
 * The read of a worker Job's pods, once the Job has ended: the worker's result is in its pod's termination
 * message. Before that the Job's own counts say all a run needs.
 */
export function workerPodsRead(job: Job | null | undefined, namespace: string, jobName: string): Read | undefined {
  return job && jobOutcome(job) !== undefined ? { list: "Pod", namespace, labelSelector: `job-name=${jobName}` } : undefined;
}

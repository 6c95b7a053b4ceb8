// A worker Job and the pods the job controller makes for it, as the core reads them: the Job's uid and template,
// and pods whose controller is the Job and whose worker container is the template's (lib/core/worker-result.ts).
import type { Job, Pod } from "../../lib/core/objects.ts";

export const WORKER_JOB_UID = "11111111-2222-3333-4444-555555555555";
const container = {
  name: "worker",
  image: "ghcr.io/ros-io/walle-worker:1.0.0",
  args: ["backup"],
  envFrom: [{ prefix: "SECRET_", secretRef: { name: "repo" } }],
  env: [{ name: "SOURCE_PATH", value: "/data" }],
  volumeMounts: [{ name: "volume", mountPath: "/data", readOnly: true }],
};
const volumes = [{ name: "volume", persistentVolumeClaim: { claimName: "snapshot-pvc", readOnly: true } }];

/** A worker Job named `name`, with a uid and the one-container template its pods are checked against. */
export function workerJobSeen(name: string, status: Job["status"]): Job {
  return { metadata: { name, uid: WORKER_JOB_UID }, spec: { template: { spec: { containers: [container], volumes } } }, ...(status ? { status } : {}) } as Job;
}

/** A pod of the Job: its controller is the Job (by uid), and it runs the Job's worker container. */
export function ownWorkerPod(pod: { metadata: Pod["metadata"]; status?: Pod["status"] }, jobName: string): Pod {
  return {
    ...pod,
    metadata: {
      ...pod.metadata,
      ownerReferences: [{ apiVersion: "batch/v1", kind: "Job", name: jobName, uid: WORKER_JOB_UID, controller: true, blockOwnerDeletion: true }],
    },
    spec: { containers: [container], volumes },
  } as Pod;
}

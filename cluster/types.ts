// The CSI snapshot kinds (snapshot.storage.k8s.io/v1), which are CRDs that @kubernetes/client-node does not model.
// Shaped as its models are (metadata optional, `Named<>` where it is known), with the fields the local CSI driver
// uses and the schema of external-snapshotter's CRDs. The core kinds come from lib/api/kube.ts.
import type { ObjectMeta, ObjectReference, With } from "../lib/api/kube.ts";

/** The top of every API object, as in client-node's models. */
interface ApiObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
}

export interface VolumeSnapshot extends ApiObject {
  spec: {
    source: { persistentVolumeClaimName?: string; volumeSnapshotContentName?: string };
    volumeSnapshotClassName?: string;
  };
  status?: {
    boundVolumeSnapshotContentName?: string;
    readyToUse?: boolean;
    restoreSize?: string;
    creationTime?: string;
    error?: { message?: string; time?: string };
  };
}

export interface VolumeSnapshotContent extends ApiObject {
  spec: {
    driver: string;
    deletionPolicy: "Delete" | "Retain";
    source: { volumeHandle?: string; snapshotHandle?: string };
    /** The CRD's validation requires both name and namespace. */
    volumeSnapshotRef: With<ObjectReference, "name" | "namespace">;
    volumeSnapshotClassName?: string;
    sourceVolumeMode?: string;
  };
  status?: { snapshotHandle?: string; readyToUse?: boolean; restoreSize?: number; creationTime?: number; error?: { message?: string } };
}

export interface VolumeSnapshotClass extends ApiObject {
  driver: string;
  deletionPolicy: "Delete" | "Retain";
}

// Kubernetes' own object types, from @kubernetes/client-node's models (`import type`: nothing of the library is
// loaded at run time). Those models are written for client-node's ObjectSerializer, which turns RFC 3339 strings
// into Date; Walle reads JSON as the API server sends it, where timestamps stay strings. `Wire<T>` is the model
// as it is on the wire.
import type {
  V1ConfigMap,
  V1Container,
  V1ContainerState,
  V1ContainerStatus,
  V1EnvVar,
  V1Job,
  V1KeyToPath,
  V1Node,
  V1NodeStatus,
  V1ObjectMeta,
  V1ObjectReference,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1Secret,
  V1SecurityContext,
  V1StorageClass,
  V1Volume,
} from "@kubernetes/client-node";

export type Wire<T> = T extends Date ? string : T extends readonly (infer U)[] ? Wire<U>[] : T extends object ? { [K in keyof T]: Wire<T[K]> } : T;

/** The model with some optional fields made required: those a schema checked, or an object Walle built. */
export type With<T, K extends keyof T> = T & { [P in K]-?: NonNullable<T[P]> };

/**
 * An object as the API server has stored it, or one Walle builds with a name: `metadata.name` is set (the server
 * resolves `generateName` when it creates the object). Informers cache objects of this shape.
 */
export type Named<T extends { metadata?: ObjectMeta }> = T & { metadata: With<ObjectMeta, "name"> };

export type ObjectMeta = Wire<V1ObjectMeta>;
export type ObjectReference = Wire<V1ObjectReference>;
export type Pod = With<Wire<V1Pod>, "metadata" | "spec">;
export type Container = Wire<V1Container>;
export type ContainerState = Wire<V1ContainerState>;
export type ContainerStatus = Wire<V1ContainerStatus>;
export type EnvVar = Wire<V1EnvVar>;
export type KeyToPath = Wire<V1KeyToPath>;
export type SecurityContext = Wire<V1SecurityContext>;
export type Volume = Wire<V1Volume>;
export type Job = With<Wire<V1Job>, "metadata">;
export type Pvc = With<Wire<V1PersistentVolumeClaim>, "metadata" | "spec">;
export type Pv = With<Wire<V1PersistentVolume>, "metadata" | "spec">;
export type StorageClass = With<Wire<V1StorageClass>, "metadata">;
export type Secret = Wire<V1Secret>;
export type ConfigMap = Wire<V1ConfigMap>;
export type Node = With<Wire<V1Node>, "metadata">;
export type NodeStatus = Wire<V1NodeStatus>;

// The local node agent: the local CSI driver's server (cluster/csi-driver.ts) on a unix socket, with its
// StorageClass, default VolumeSnapshotClass and CSIDriver object. The real CSI sidecars and snapshot controller
// (cluster/storage.ts) drive its Controller service, and the real node's kubelet (cluster/node.ts) its Node service.
import type { RestClient } from "../lib/k8s/rest.ts";
import { applyObjects } from "./index.ts";
import { csiDirs, SNAPSHOT_ERROR_ANNOTATION, storageObjects } from "./csi.ts";
import { CsiDriver, serveCsi, type CsiServer } from "./csi-driver.ts";
import type { Pvc } from "../lib/api/kube.ts";
import type { VolumeSnapshot } from "./types.ts";

export interface NodeAgentOptions {
  readonly api: RestClient;
  readonly stateDir: string;
  readonly log?: (msg: string, extra?: Record<string, unknown>) => void;
}

export interface NodeAgent {
  /** The CSI driver's server, whose socket the CSI sidecars and the kubelet call. */
  readonly csi: CsiServer;
  stop(): Promise<void>;
}

/**
 * The test hook SNAPSHOT_ERROR_ANNOTATION: the message on the VolumeSnapshot being made, or on the PVC it snapshots,
 * found by the name and namespace csi-snapshotter passes in CreateSnapshot's parameters.
 */
async function injectedSnapshotError(api: RestClient, parameters: Readonly<Record<string, string>>): Promise<string | undefined> {
  const name = parameters["csi.storage.k8s.io/volumesnapshot/name"];
  const namespace = parameters["csi.storage.k8s.io/volumesnapshot/namespace"];
  if (!name || !namespace) return undefined;
  const vs = await api.get<VolumeSnapshot>(`/apis/snapshot.storage.k8s.io/v1/namespaces/${namespace}/volumesnapshots/${name}`).catch(() => undefined);
  const pvcName = vs?.spec.source.persistentVolumeClaimName;
  const pvc = pvcName ? await api.get<Pvc>(`/api/v1/namespaces/${namespace}/persistentvolumeclaims/${pvcName}`).catch(() => undefined) : undefined;
  return vs?.metadata?.annotations?.[SNAPSHOT_ERROR_ANNOTATION] ?? pvc?.metadata?.annotations?.[SNAPSHOT_ERROR_ANNOTATION];
}

export async function startNodeAgent(opts: NodeAgentOptions): Promise<NodeAgent> {
  const { api } = opts;
  const dirs = csiDirs(opts.stateDir);
  const driver = new CsiDriver({ ...dirs, refuseSnapshot: (parameters) => injectedSnapshotError(api, parameters) });
  await driver.init();
  const csi = await serveCsi(driver, dirs.socket, opts.log);
  try {
    await applyObjects(api, storageObjects());
  } catch (err) {
    await csi.stop();
    throw err;
  }
  return { csi, stop: () => csi.stop() };
}

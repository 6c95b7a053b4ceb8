// The CSI machinery of the local cluster, the real programs a cluster runs for a CSI driver, built from the Go module
// proxy (toolchain/snapshotter, toolchain/provisioner):
// - snapshot-controller (external-snapshotter v8.7.0) binds VolumeSnapshots to VolumeSnapshotContents, adds and
//   removes their finalizers, and follows the deletion policies;
// - csi-snapshotter, the driver's sidecar, calls CreateSnapshot, ListSnapshots and DeleteSnapshot for contents of
//   the local driver, with --extra-create-metadata so the driver knows the VolumeSnapshot (the error test hook);
// - csi-provisioner (external-provisioner v6.4.0), the driver's other sidecar, turns PVCs of its StorageClass into
//   CreateVolume calls (empty, from a snapshot, or a clone) and PVs, and released PVs into DeleteVolume.
// Each runs as its upstream ServiceAccount, under upstream's RBAC applied as it is shipped (never a wider role), with
// a TokenRequest token, and is started again if it exits, as a kubelet would. Leader election is off: one replica.
import path from "node:path";
import type { RestClient } from "../lib/k8s/rest.ts";
import { applyObjects, readManifestFiles, serviceAccountKubeconfig } from "./index.ts";
import { startProcess, supervise, tail, waitUntil, type Supervised } from "./processes.ts";
import { resolveBinary, upstreamRbac, upstreamRbacFile } from "./toolchain.ts";

type Controller = keyof typeof upstreamRbac;

export interface StorageOptions {
  /** An admin client: it applies the RBAC and mints the controllers' tokens. */
  readonly api: RestClient;
  readonly stateDir: string;
  /** The CSI driver's unix socket. */
  readonly socket: string;
  readonly log?: (msg: string, extra?: Record<string, unknown>) => void;
}

export interface StorageControllers {
  readonly controllers: readonly Supervised[];
  stop(): Promise<void>;
}

/** The ServiceAccount each controller runs as: the one its upstream RBAC file binds. */
const ACCOUNTS: Record<Controller, { namespace: string; name: string }> = {
  "snapshot-controller": { namespace: "kube-system", name: "snapshot-controller" },
  "csi-snapshotter": { namespace: "default", name: "csi-snapshotter" },
  "csi-provisioner": { namespace: "default", name: "csi-provisioner" },
};

/** A line each logs once its informers have synced and its workers run, at --v=2. */
const READY: Record<Controller, RegExp> = {
  "snapshot-controller": /Starting snapshot controller/,
  "csi-snapshotter": /Starting CSI snapshotter/,
  "csi-provisioner": /Started provisioner controller/,
};

/** A token lasts a day; each (re)start gets a new one. */
const TOKEN_SECONDS = 24 * 3600;

function args(name: Controller, kubeconfig: string, socket: string): string[] {
  // Each takes 5 requests a second (burst 10) by default, and a snapshot costs the controller about ten: 200 PVCs
  // backed up at once then waited minutes on the controller's client-side throttle alone (bench/scale.ts). A cluster
  // that snapshots at that scale raises them, as here.
  const common = [`--kubeconfig=${kubeconfig}`, "--leader-election=false", "--v=2", "--kube-api-qps=50", "--kube-api-burst=100"];
  switch (name) {
    case "snapshot-controller":
      return common;
    case "csi-snapshotter":
      return [...common, `--csi-address=${socket}`, "--extra-create-metadata"];
    case "csi-provisioner":
      return [...common, `--csi-address=${socket}`];
  }
}

export async function startStorageControllers(opts: StorageOptions): Promise<StorageControllers> {
  const log = opts.log ?? (() => {});
  const names = Object.keys(upstreamRbac) as Controller[];
  for (const name of names) await applyObjects(opts.api, await readManifestFiles([await upstreamRbacFile(name, (l) => log(l))]));
  const started: Supervised[] = [];
  try {
    for (const name of names) {
      const bin = await resolveBinary(name, (l) => log(l));
      const logFile = path.join(opts.stateDir, "logs", `${name}.log`);
      const account = ACCOUNTS[name];
      const start = async () => {
        const kubeconfig = await serviceAccountKubeconfig(opts.api, opts.stateDir, account.namespace, account.name, TOKEN_SECONDS);
        return startProcess(name, bin, args(name, kubeconfig, opts.socket), logFile, { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/" });
      };
      const controller = await supervise(name, start, log);
      started.push(controller);
      await waitUntil(`${name} running`, async () => READY[name].test(await tail(logFile, 400)), 60_000, [controller.current()]);
    }
  } catch (err) {
    for (const c of started) await c.stop();
    throw err;
  }
  return {
    controllers: started,
    async stop() {
      for (const c of started.toReversed()) await c.stop();
    },
  };
}

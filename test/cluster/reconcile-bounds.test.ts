// The admission policy that bounds Walle's own service accounts (knative/reconcile-bounds.yaml), with the reconcile
// function's real credentials: each thing RBAC lets it create that Walle never makes is denied, naming the rule,
// and each of Walle's own objects, made by the core's builders, is admitted. Server-side dry runs: admission runs,
// nothing is stored.
import { describe, expect, it } from "vitest";
import { INSTALL_NAMESPACE, ServiceAccount } from "../../lib/api/constants.ts";
import { movedContent, ownedMetadata, pvcFromSnapshot, workerJob, workerServiceAccount, type Manifest } from "../../lib/core/builders.ts";
import { UNPRIVILEGED, type WorkerMode } from "../../lib/core/privileges.ts";
import { ApiError, type RestClient } from "../../lib/k8s/rest.ts";
import { admin, clientForServiceAccount, createNamespace } from "../support/kube.ts";
import { testConfig } from "../support/config.ts";
import { WORKER_IMAGE } from "../support/walle.ts";

const DRY = { dryRun: "All" };
const config = { ...testConfig, workerImage: WORKER_IMAGE };
const owner = {
  namespace: "elsewhere",
  ref: { apiVersion: "ros.io/v1", kind: "BackupJob", name: "b", uid: "u", controller: true, blockOwnerDeletion: true } as const,
};
const FULL_FIDELITY: WorkerMode = { privileged: true };

/** The answer to a dry-run create: "admitted", or the policy's message. */
async function attempt(api: RestClient, path: string, body: unknown): Promise<string> {
  return api.create(path, body, DRY).then(
    () => "admitted",
    (e: unknown) => (e instanceof ApiError ? `${e.code} ${e.message}` : String(e)),
  );
}

function walleJob(ns: string, mode: WorkerMode = UNPRIVILEGED): Manifest {
  return workerJob({
    metadata: ownedMetadata("worker", ns, { "ros.io/backup-job": "b" }, owner),
    config,
    command: "restore",
    mode,
    repositorySecret: "repo",
    volume: { claimName: "target", readOnly: false },
    env: {},
  });
}

/** Walle's worker Job with one thing changed in its pod spec. */
function tampered(ns: string, change: (pod: Record<string, unknown> & { containers: Record<string, unknown>[] }) => void): Manifest {
  const job = structuredClone(walleJob(ns)) as Manifest & { spec: { template: { spec: Record<string, unknown> & { containers: Record<string, unknown>[] } } } };
  change(job.spec.template.spec);
  return job;
}

function unlabelled(job: Manifest): Manifest {
  const bare = structuredClone(job) as Manifest & { spec: { template: { metadata?: unknown } } };
  delete bare.spec.template.metadata;
  return { ...bare, metadata: { name: "bare", namespace: job.metadata.namespace, labels: {} } };
}

describe("Walle's service accounts, bounded at admission", () => {
  it("may create only Walle's own worker Jobs, labelled PVCs and contents, whatever RBAC allows", async () => {
    const ns = await createNamespace("bounds");
    const reconcile = await clientForServiceAccount(INSTALL_NAMESPACE, ServiceAccount.Reconcile);
    const jobs = `/apis/batch/v1/namespaces/${ns}/jobs`;
    const accounts = `/api/v1/namespaces/${ns}/serviceaccounts`;
    const container = (pod: { containers: Record<string, unknown>[] }) =>
      pod.containers[0] as Record<string, unknown> & { securityContext: Record<string, unknown> };

    const denied: Record<string, [Manifest | Record<string, unknown>, string, RegExp]> = {
      // Two policies refuse it (the image's name, and the install's image exactly); the API server names either.
      "a Job of another image": [
        tampered(ns, (p) => (container(p).image = "docker.io/library/busybox:1")),
        jobs,
        /walle-reconcile-bounds'.*walle-worker image|walle-worker-image'.*install's worker image/,
      ],
      "a Job that mounts a hostPath": [
        tampered(ns, (p) => (p.volumes = [...(p.volumes as unknown[]), { name: "host", hostPath: { path: "/" } }])),
        jobs,
        /never a hostPath/,
      ],
      "a Job that mounts a Secret": [
        tampered(ns, (p) => (p.volumes = [...(p.volumes as unknown[]), { name: "s", secret: { secretName: "anything" } }])),
        jobs,
        /never a hostPath, a Secret/,
      ],
      "a Job with an API token": [tampered(ns, (p) => (p.automountServiceAccountToken = true)), jobs, /no API token/],
      "a Job as another service account": [tampered(ns, (p) => (p.serviceAccountName = "admin")), jobs, /no API token/],
      "a Job that projects a token for the API server": [
        tampered(
          ns,
          (p) =>
            (p.volumes = [
              ...(p.volumes as unknown[]),
              { name: "t", projected: { sources: [{ serviceAccountToken: { audience: "https://kubernetes.default.svc.cluster.local", path: "token" } }] } },
            ]),
        ),
        jobs,
        /progress token \(audience walle-progress\)/,
      ],
      "a privileged Job": [
        tampered(ns, (p) => (container(p).securityContext = { ...container(p).securityContext, privileged: true, allowPrivilegeEscalation: true })),
        jobs,
        /is not privileged/,
      ],
      "a Job that adds SYS_ADMIN": [
        tampered(ns, (p) => (container(p).securityContext = { ...container(p).securityContext, capabilities: { drop: ["ALL"], add: ["SYS_ADMIN"] } })),
        jobs,
        /adds back at most CHOWN/,
      ],
      "a Job on the host's network": [tampered(ns, (p) => (p.hostNetwork = true)), jobs, /no host namespace/],
      "a Job with an init container": [
        tampered(ns, (p) => (p.initContainers = [{ name: "i", image: "ghcr.io/ros-io/walle-worker:1" }])),
        jobs,
        /no init or ephemeral containers/,
      ],
      // (A Job without labels takes its pod template's, so both go.)
      "an unlabelled Job": [unlabelled(walleJob(ns)), jobs, /labelled app\.kubernetes\.io\/created-by=walle/],
      "an unlabelled PVC": [
        {
          apiVersion: "v1",
          kind: "PersistentVolumeClaim",
          metadata: { name: "grab" },
          spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
        },
        `/api/v1/namespaces/${ns}/persistentvolumeclaims`,
        /labelled app\.kubernetes\.io\/created-by=walle/,
      ],
      "a ServiceAccount of another name": [
        { ...workerServiceAccount(ns), metadata: { ...workerServiceAccount(ns).metadata, name: "deployer" } },
        accounts,
        /only the walle-worker service account/,
      ],
      "the worker's ServiceAccount with a token automounted": [
        { ...workerServiceAccount(ns), automountServiceAccountToken: true },
        accounts,
        /automountServiceAccountToken false/,
      ],
      "the worker's ServiceAccount with image pull secrets": [
        { ...workerServiceAccount(ns), imagePullSecrets: [{ name: "registry-credentials" }] },
        accounts,
        /no secrets or image pull secrets/,
      ],
      "an unlabelled VolumeSnapshotContent": [
        {
          apiVersion: "snapshot.storage.k8s.io/v1",
          kind: "VolumeSnapshotContent",
          metadata: { name: `grab-${ns}` },
          spec: {
            driver: "hostpath.csi.walle.local",
            deletionPolicy: "Retain",
            source: { snapshotHandle: "someone-elses" },
            volumeSnapshotRef: { name: "x", namespace: ns },
          },
        },
        "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents",
        /labelled app\.kubernetes\.io\/created-by=walle/,
      ],
    };
    const seen: Record<string, string> = {};
    for (const [what, [body, path]] of Object.entries(denied)) seen[what] = await attempt(reconcile, path, body);
    for (const [what, [, , message]] of Object.entries(denied)) {
      expect(seen[what], what).toMatch(/^403 .*ValidatingAdmissionPolicy 'walle-(reconcile-bounds|worker-image)'/);
      expect(seen[what], what).toMatch(message);
    }

    // Walle's own, as its builders make them: admitted, in both worker modes.
    const own = {
      "the workers' ServiceAccount": await attempt(reconcile, accounts, workerServiceAccount(ns)),
      "the unprivileged worker Job": await attempt(reconcile, jobs, walleJob(ns)),
      "the full-fidelity restore worker Job": await attempt(reconcile, jobs, walleJob(ns, FULL_FIDELITY)),
      "the PVC from a snapshot": await attempt(
        reconcile,
        `/api/v1/namespaces/${ns}/persistentvolumeclaims`,
        pvcFromSnapshot(ownedMetadata("from-snap", ns, {}, owner), "snap", "1Gi"),
      ),
      "the moved content": await attempt(
        reconcile,
        "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents",
        movedContent(
          ownedMetadata(`moved-${ns}`, undefined, {}, owner),
          { driver: "hostpath.csi.walle.local", snapshotHandle: "h" },
          { namespace: ns, name: "moved" },
        ),
      ),
    };
    expect(own).toEqual(Object.fromEntries(Object.keys(own).map((k) => [k, "admitted"])));
  });

  it("may change a PersistentVolume only as the restore handover does", async () => {
    const reconcile = await clientForServiceAccount(INSTALL_NAMESPACE, ServiceAccount.Reconcile);
    const name = `bounds-pv-${Date.now()}`;
    await admin().create("/api/v1/persistentvolumes", {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name },
      // Claimed by a staging PVC of Walle's, as a restore's volume is before the handover.
      spec: {
        capacity: { storage: "1Gi" },
        accessModes: ["ReadWriteOnce"],
        persistentVolumeReclaimPolicy: "Delete",
        storageClassName: "csi-hostpath-sc",
        csi: { driver: "hostpath.csi.walle.local", volumeHandle: name },
        claimRef: { namespace: "walle-system", name: `walle-restore-${name}` },
      },
    });
    try {
      const patch = (body: unknown) =>
        reconcile.patch(`/api/v1/persistentvolumes/${name}`, body, "merge", DRY).then(
          () => "admitted",
          (e: unknown) => (e instanceof ApiError ? `${e.code} ${e.message}` : String(e)),
        );
      expect(await patch({ spec: { persistentVolumeReclaimPolicy: "Retain" }, metadata: { labels: { "app.kubernetes.io/created-by": "walle" } } })).toBe(
        "admitted",
      );
      await admin().patch(`/api/v1/persistentvolumes/${name}`, { metadata: { labels: { "app.kubernetes.io/created-by": "walle" } } }, "merge");
      expect(await patch({ spec: { claimRef: { namespace: "shop", name: "restored", uid: null, resourceVersion: null } } })).toBe("admitted");
      for (const change of [{ capacity: { storage: "100Gi" } }, { accessModes: ["ReadWriteMany"] }, { storageClassName: "other" }, { mountOptions: ["rw"] }]) {
        expect(await patch({ spec: change }), JSON.stringify(change)).toMatch(
          /^403 .*walle-reconcile-bounds.*only a PersistentVolume's claimRef and reclaim policy/,
        );
      }
    } finally {
      await admin()
        .delete(`/api/v1/persistentvolumes/${name}`)
        .catch(() => {});
    }
  });
});

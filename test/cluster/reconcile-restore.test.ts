// BackupRestores driven to the end: into a new PVC, into an existing one (refused while a pod uses it), and from
// the install namespace's shared repository into a tenant's namespace by handing the volume over (docs/architecture.md, Security).
import { chmod, mkdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { csiStorage, expectNoLeftovers, settledRestore, volumeDir, type BackupRestoreObj } from "../support/backup-fixtures.ts";
import { manifest, startRestServer, tempDir, type RestServer } from "../integration/worker-harness.ts";
import { admin, createNamespace, waitFor } from "../support/kube.ts";
import { startWalle } from "../support/walle.ts";

const PASSWORD = "restore me, please";
const TOKEN = "trigger-token-for-tests";
let rest: RestServer;

beforeAll(async () => {
  rest = await startRestServer({ dataDir: await tempDir("rest-restore"), users: { r: "rest-secret" } });
});
afterAll(async () => rest?.stop());

async function boundPvc(ns: string, name: string): Promise<string> {
  await admin().create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name },
    spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
  });
  await waitFor(
    async () => (await admin().get<{ status?: { phase?: string } }>(`/api/v1/namespaces/${ns}/persistentvolumeclaims/${name}`)).status?.phase === "Bound",
    `PVC ${ns}/${name} Bound`,
  );
  return volumeDir(ns, name);
}

/** A tree with what a restore must keep: nested dirs, an empty dir, a symlink, modes, a non-ASCII name. */
async function fillTree(dir: string): Promise<void> {
  await mkdir(path.join(dir, "app/config"), { recursive: true });
  await mkdir(path.join(dir, "empty"), { recursive: true });
  await writeFile(path.join(dir, "app/config/settings.json"), JSON.stringify({ replicas: 3 }));
  await writeFile(path.join(dir, "app/run.sh"), "#!/bin/sh\necho run\n");
  await chmod(path.join(dir, "app/run.sh"), 0o755);
  await writeFile(path.join(dir, "données-été.txt"), "accents ✓");
  await writeFile(path.join(dir, "big.bin"), Buffer.alloc(300_000, 7));
  await symlink("app/config/settings.json", path.join(dir, "settings-link"));
  for (const f of ["app/config/settings.json", "données-été.txt", "big.bin"]) await chmod(path.join(dir, f), 0o644);
}

/** What a restore must reproduce: paths, types, contents, modes and link targets (owners are the worker's). */
async function shape(dir: string) {
  return (await manifest(dir)).map((e) => ({
    path: e.path,
    type: e.type,
    mode: e.mode,
    ...("sha256" in e ? { sha256: e.sha256 } : {}),
    ...("target" in e ? { target: e.target } : {}),
  }));
}

async function secret(ns: string, name: string, repo: string): Promise<void> {
  await admin().create(`/api/v1/namespaces/${ns}/secrets`, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name },
    stringData: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD, INITIALIZE_REPO: "true" },
  });
}

async function settledBackup(ns: string, name: string): Promise<void> {
  await waitFor(
    async () => {
      const bj = await admin().get<{ status?: { phase?: string } }>(`/apis/ros.io/v1/namespaces/${ns}/backupjobs/${name}`);
      if (bj.status?.phase === "Failed") throw new Error(`backup failed: ${JSON.stringify(bj.status)}`);
      return bj.status?.phase === "Finished";
    },
    `BackupJob ${ns}/${name} Finished`,
    90_000,
  );
}

const stateOf = (br: BackupRestoreObj) => ({ phase: br.status?.phase, restore: br.status?.conditions?.find((c) => c.type === "RestoreState") });

async function backupOwnNamespace(ns: string): Promise<{ source: string }> {
  const source = await boundPvc(ns, "data");
  await fillTree(source);
  await secret(ns, "repo", rest.repository("r", "rest-secret", `restore-${ns}`));
  await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, {
    apiVersion: "ros.io/v1",
    kind: "BackupJob",
    metadata: { name: "backup" },
    spec: { sourcePvc: "data", repository: { name: "repo", namespace: ns } },
  });
  await settledBackup(ns, "backup");
  return { source };
}

async function restore(ns: string, name: string, spec: Record<string, unknown>): Promise<void> {
  await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backuprestores`, { apiVersion: "ros.io/v1", kind: "BackupRestore", metadata: { name }, spec });
}

describe("reconcile drives a BackupRestore", () => {
  it("into a new PVC, byte-identical to the backed-up tree", async () => {
    await startWalle();
    const ns = await createNamespace("restore-new");
    const { source } = await backupOwnNamespace(ns);
    await restore(ns, "to-new", {
      repository: { name: "repo", namespace: ns },
      source: { latest: { pvc: "data" } },
      target: { newPvc: { name: "data-restored", size: "1Gi" } },
    });
    const br = await settledRestore(ns, "to-new");
    expect(stateOf(br)).toMatchObject({ phase: "Finished", restore: { status: "True" } });
    expect(br.status?.snapshotId).toMatch(/^[0-9a-f]{64}$/);
    expect(br.status?.summary?.filesRestored).toBeGreaterThanOrEqual(4);
    expect(await shape(await volumeDir(ns, "data-restored"))).toEqual(await shape(source));
    // The restored PVC is the user's: it stays after the BackupRestore is deleted.
    await admin().delete(`/apis/ros.io/v1/namespaces/${ns}/backuprestores/to-new`);
    await new Promise((r) => setTimeout(r, 2000));
    expect((await admin().get<{ status?: { phase?: string } }>(`/api/v1/namespaces/${ns}/persistentvolumeclaims/data-restored`)).status?.phase).toBe("Bound");
  });

  it("into an existing PVC, and refuses while a running pod mounts it", async () => {
    await startWalle();
    const ns = await createNamespace("restore-existing");
    const { source } = await backupOwnNamespace(ns);
    await boundPvc(ns, "target");
    await admin().create(`/api/v1/namespaces/${ns}/pods`, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "app" },
      spec: {
        containers: [{ name: "app", image: "busybox:1.36", command: ["sleep", "infinity"], volumeMounts: [{ name: "d", mountPath: "/data" }] }],
        volumes: [{ name: "d", persistentVolumeClaim: { claimName: "target" } }],
      },
    });
    await waitFor(
      async () => (await admin().get<{ status?: { phase?: string } }>(`/api/v1/namespaces/${ns}/pods/app`)).status?.phase === "Running",
      "app pod Running",
    );
    const spec = { repository: { name: "repo", namespace: ns }, source: { latest: { pvc: "data" } }, target: { existingPvc: "target" } };
    await restore(ns, "refused", spec);
    const refused = await settledRestore(ns, "refused");
    expect(stateOf(refused)).toMatchObject({ phase: "Failed", restore: { reason: "TargetInUse" } });
    expect(stateOf(refused).restore?.message).toBe(
      `PersistentVolumeClaim ${ns}/target is mounted by running pod(s) app; stop them first, or set spec.target.allowInUse to restore anyway.`,
    );

    await admin().delete(`/api/v1/namespaces/${ns}/pods/app`);
    await waitFor(
      async () =>
        admin()
          .get(`/api/v1/namespaces/${ns}/pods/app`)
          .then(
            () => false,
            () => true,
          ),
      "app pod gone",
    );
    await restore(ns, "accepted", spec);
    const br = await settledRestore(ns, "accepted");
    expect(stateOf(br)).toMatchObject({ phase: "Finished", restore: { status: "True" } });
    expect(await shape(await volumeDir(ns, "target"))).toEqual(await shape(source));
  });

  it("from the install namespace's repository into another namespace, handing the volume over, never exposing the Secret", async () => {
    const walle = await startWalle({ triggerToken: TOKEN });
    const before = await csiStorage();
    const ns = await createNamespace("restore-cross");
    const secretName = `shared-${ns}`;
    await secret("walle-system", secretName, rest.repository("r", "rest-secret", `shared-${ns}`));
    const source = await boundPvc(ns, "app-data");
    await fillTree(source);
    const post = (type: string, id: string, data: unknown, token?: string) =>
      fetch(walle.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "ce-specversion": "1.0",
          "ce-id": id,
          "ce-source": "/test",
          "ce-type": type,
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: JSON.stringify(data),
      });
    const backup = await post("io.ros.walle.backup.requested", `b-${ns}`, { namespace: ns, pvc: "app-data", repository: { name: secretName } }, TOKEN);
    expect(backup.status).toBe(202);
    await settledBackup(ns, ((await backup.json()) as { backupJob: { name: string } }).backupJob.name);

    const request = {
      namespace: ns,
      repository: { name: secretName, namespace: "walle-system" },
      source: { latest: { pvc: "app-data" } },
      target: { newPvc: { name: "restored", size: "1Gi" } },
    };
    expect((await post("io.ros.walle.restore.requested", `r-${ns}`, request)).status).toBe(401);
    const res = await post("io.ros.walle.restore.requested", `r-${ns}`, request, TOKEN);
    expect(res.status).toBe(202);
    const { backupRestore } = (await res.json()) as { backupRestore: { namespace: string; name: string } };
    const br = await settledRestore(ns, backupRestore.name);
    expect(stateOf(br)).toMatchObject({ phase: "Finished", restore: { status: "True" } });
    expect(await shape(await volumeDir(ns, "restored"))).toEqual(await shape(source));

    const secrets = await admin().get<{ items: { metadata: { name: string } }[] }>(`/api/v1/namespaces/${ns}/secrets`);
    expect(secrets.items.map((s) => s.metadata.name)).not.toContain(secretName);
    // The handed-over volume is bound to the tenant's PVC with its reclaim policy back, and no staging PVC is left.
    const pvc = await admin().get<{ spec: { volumeName: string } }>(`/api/v1/namespaces/${ns}/persistentvolumeclaims/restored`);
    const pv = await admin().get<{
      spec: { persistentVolumeReclaimPolicy: string; claimRef: { namespace: string; name: string } };
      metadata: { annotations?: Record<string, string> };
    }>(`/api/v1/persistentvolumes/${pvc.spec.volumeName}`);
    expect(pv.spec.claimRef).toMatchObject({ namespace: ns, name: "restored" });
    expect(pv.spec.persistentVolumeReclaimPolicy).toBe("Delete");
    const staging = await admin().get<{ items: unknown[] }>("/api/v1/namespaces/walle-system/persistentvolumeclaims", {
      labelSelector: "ros.io/backup-job-type=restore",
    });
    expect(staging.items).toEqual([]);
    // Nothing else is left either, down to the CSI driver's own storage: the tenant's two volumes are all it holds.
    await expectNoLeftovers([ns, "walle-system"], before);
  });
});

// BackupJobs driven to the end by the reconcile function, fed by Knative's ApiServerSource adapter, on the real control
// plane: the snapshot, the PVC made from it, the hardened worker running real restic against a real
// rest-server, the status, the Events and the cleanup.
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { ApiError } from "../../lib/k8s/rest.ts";
import { listSnapshots, restic, startRestServer, tempDir, type RestServer } from "../integration/worker-harness.ts";
import { csiStorage, expectNoLeftovers, names, PASSWORD, pvcWithData, repositorySecret, settled, type BackupJobObj } from "../support/backup-fixtures.ts";
import { admin, createNamespace, waitFor } from "../support/kube.ts";
import { caller, FORCE_BACKUPS } from "../support/triggers.ts";
import { CLUSTER_NAME, startWalle } from "../support/walle.ts";

const USER = "backup";

let rest: RestServer;

beforeAll(async () => {
  rest = await startRestServer({ dataDir: await tempDir("rest"), users: { [USER]: "rest-secret" } });
});
afterAll(async () => rest?.stop());

async function backupJob(ns: string, name: string, spec: Record<string, unknown>): Promise<void> {
  await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, { apiVersion: "ros.io/v1", kind: "BackupJob", metadata: { name }, spec });
}

const condition = (bj: BackupJobObj, type: string) => bj.status?.conditions?.find((c) => c.type === type);

describe("reconcile drives a BackupJob", () => {
  it("with its repository in its own namespace, to Finished, with the snapshot in restic", async () => {
    await startWalle();
    const before = await csiStorage();
    const ns = await createNamespace("own-repo");
    const repo = rest.repository(USER, "rest-secret", `own-${ns}`);
    await pvcWithData(ns, "data", { "hello.txt": "hello", "dir/notes.md": "# notes" });
    await repositorySecret(ns, "repo", repo);
    await backupJob(ns, "first", { sourcePvc: "data", repository: { name: "repo", namespace: ns } });

    const bj = await settled(ns, "first");
    expect({ phase: bj.status?.phase, logs: bj.status?.logs, state: condition(bj, "BackupState") }).toMatchObject({
      phase: "Finished",
      state: { status: "True" },
    });
    expect(bj.status?.phase).toBe("Finished");
    expect(condition(bj, "SnapshotReady")?.status).toBe("True");
    expect(bj.status?.snapshotId).toMatch(/^[0-9a-f]{64}$/);
    expect(bj.status?.summary).toMatchObject({ filesNew: 2, filesChanged: 0, totalBytesProcessed: "hello".length + "# notes".length });
    expect(bj.status?.startTime && bj.status.finishTime).toBeTruthy();

    const snapshots = await listSnapshots({ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD });
    expect(snapshots).toHaveLength(1);
    const [snap] = snapshots;
    expect(snap?.id).toBe(bj.status?.snapshotId);
    expect(snap?.hostname).toBe(CLUSTER_NAME);
    expect(snap?.tags).toEqual(expect.arrayContaining(["pvc=data", `namespace=${ns}`]));
    // restic's time is the volume snapshot's, not the worker's start.
    expect(Math.abs(Date.parse(snap?.time ?? "") - Date.parse(bj.status?.startTime ?? ""))).toBeLessThan(10_000);
    const files = await restic(["ls", "--json", "latest"], { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD });
    expect(files).toContain('"path":"/hello.txt"');

    const events = await admin().get<{ items: { reason: string; regarding: { name: string } }[] }>(`/apis/events.k8s.io/v1/namespaces/${ns}/events`);
    expect(events.items.filter((e) => e.regarding.name === "first").map((e) => e.reason)).toEqual(
      expect.arrayContaining(["CreatingSnapshot", "SnapshotReady", "BackupFinished"]),
    );
    await expectNoLeftovers([ns], before);
  });

  it("with its repository in the install namespace, forced by a CloudEvent, never exposing the Secret", async () => {
    const walle = await startWalle();
    const before = await csiStorage();
    const ns = await createNamespace("tenant");
    const repo = rest.repository(USER, "rest-secret", `shared-${ns}`);
    const secretName = `shared-${ns}`;
    await repositorySecret("walle-system", secretName, repo);
    onCleanupDelete(`/api/v1/namespaces/walle-system/secrets/${secretName}`);
    await pvcWithData(ns, "app-data", { "db.sqlite": "rows" });
    // A CI job's service account, which RBAC allows to back this namespace up into this shared repository.
    const token = await caller(ns, "ci", { own: FORCE_BACKUPS, repositories: { verbs: ["backup"], names: [secretName] } });

    const res = await fetch(walle.url, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": `force-${ns}`,
        "ce-source": "/test/curl",
        "ce-type": "io.ros.walle.backup.requested",
      },
      body: JSON.stringify({ namespace: ns, pvc: "app-data", repository: { name: secretName } }),
    });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { backupJob: { namespace: string; name: string } };
    expect(body.backupJob.namespace).toBe(ns);

    const bj = await settled(ns, body.backupJob.name);
    expect(bj.status?.phase).toBe("Finished");
    const snapshots = await listSnapshots({ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD });
    expect(snapshots.map((s) => s.id)).toEqual([bj.status?.snapshotId]);
    expect(await names(`/api/v1/namespaces/${ns}/secrets`)).not.toContain(secretName);
    // Moved across namespaces by the real snapshot controller and sidecars, and then nothing of it is left: no
    // VolumeSnapshot, content, PVC or PV, and no storage snapshot or volume in the CSI driver's own state.
    await expectNoLeftovers([ns, "walle-system"], before);
  });

  it("fails with a clear condition when the PVC does not exist", async () => {
    await startWalle();
    const ns = await createNamespace("nopvc");
    await repositorySecret(ns, "repo", rest.repository(USER, "rest-secret", `nopvc-${ns}`));
    await backupJob(ns, "missing", { sourcePvc: "absent", repository: { name: "repo", namespace: ns } });
    const bj = await settled(ns, "missing");
    expect(bj.status?.phase).toBe("Failed");
    expect(condition(bj, "BackupState")).toMatchObject({ reason: "PvcNotFound", message: `PersistentVolumeClaim ${ns}/absent was not found.` });
  });

  it("fails with a clear condition when the snapshot fails", async () => {
    await startWalle();
    const ns = await createNamespace("snaperr");
    await repositorySecret(ns, "repo", rest.repository(USER, "rest-secret", `snaperr-${ns}`));
    await pvcWithData(ns, "data", { a: "a" }, { "local.walle.dev/snapshot-error": "the storage backend is out of space" });
    await backupJob(ns, "broken", { sourcePvc: "data", repository: { name: "repo", namespace: ns } });
    const bj = await settled(ns, "broken");
    expect(bj.status?.phase).toBe("Failed");
    // csi-snapshotter's words around the driver's gRPC error, which the snapshot controller copies to the snapshot.
    expect(condition(bj, "SnapshotReady")?.message).toMatch(/^VolumeSnapshot \S+ failed: .*the storage backend is out of space/);
    await expectNoLeftovers([ns]);
  });

  it("fails, naming the quota, when the API server refuses its worker Job, and records its clean-up", async () => {
    await startWalle();
    const ns = await createNamespace("quota");
    await repositorySecret(ns, "repo", rest.repository(USER, "rest-secret", `quota-${ns}`));
    await pvcWithData(ns, "data", { a: "a" });
    // An admin's quota that admits no Job in the namespace: the ResourceQuota admission refuses the worker's (403).
    await admin().create(`/api/v1/namespaces/${ns}/resourcequotas`, {
      apiVersion: "v1",
      kind: "ResourceQuota",
      metadata: { name: "no-jobs" },
      spec: { hard: { "count/jobs.batch": "0" } },
    });
    // Enforced once the quota controller has counted what the namespace holds.
    await waitFor(
      async () =>
        (await admin().get<{ status?: { hard?: Record<string, string> } }>(`/api/v1/namespaces/${ns}/resourcequotas/no-jobs`)).status?.hard !== undefined,
      "the quota counted",
      30_000,
    );
    await backupJob(ns, "refused", { sourcePvc: "data", repository: { name: "repo", namespace: ns } });
    const bj = await settled(ns, "refused");
    expect({ phase: bj.status?.phase, reason: condition(bj, "BackupState")?.reason }).toEqual({ phase: "Failed", reason: "Refused" });
    expect(condition(bj, "BackupState")?.message).toMatch(
      new RegExp(`^The API server refused what the BackupJob needs: create Job ${ns}/\\S+: .*exceeded quota: no-jobs`),
    );
    const events = await admin().get<{ items: { reason: string; type: string; note?: string }[] }>(`/apis/events.k8s.io/v1/namespaces/${ns}/events`, {
      fieldSelector: "regarding.name=refused",
    });
    expect(events.items.filter((e) => e.reason === "BackupFailed").map((e) => ({ type: e.type, quota: e.note?.includes("no-jobs") }))).toEqual([
      { type: "Warning", quota: true },
    ]);
    // Its clean-up is recorded. (Its VolumeSnapshot can outlive it until the snapshot controller's next resync: the PVC
    // made from it was being provisioned when the clean-up deleted it. Known, and open: docs/security.md.)
    expect(condition(bj, "CleanedUp")?.status).toBe("True");
  });

  it("fails with a clear condition when no VolumeSnapshotClass fits the PVC's driver", async () => {
    await startWalle();
    const ns = await createNamespace("noclass");
    await repositorySecret(ns, "repo", rest.repository(USER, "rest-secret", `noclass-${ns}`));
    const scName = `other-${ns}`;
    await admin().create("/apis/storage.k8s.io/v1/storageclasses", {
      apiVersion: "storage.k8s.io/v1",
      kind: "StorageClass",
      metadata: { name: scName },
      provisioner: "other.csi.example.com",
    });
    onCleanupDelete(`/apis/storage.k8s.io/v1/storageclasses/${scName}`);
    // A statically provisioned volume of another driver, which the binder binds to the claim.
    await admin().create("/api/v1/persistentvolumes", {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: `pv-${ns}` },
      spec: {
        capacity: { storage: "1Gi" },
        accessModes: ["ReadWriteOnce"],
        storageClassName: scName,
        csi: { driver: "other.csi.example.com", volumeHandle: ns },
        persistentVolumeReclaimPolicy: "Retain",
      },
    });
    onCleanupDelete(`/api/v1/persistentvolumes/pv-${ns}`);
    await admin().create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "data" },
      spec: { accessModes: ["ReadWriteOnce"], storageClassName: scName, resources: { requests: { storage: "1Gi" } } },
    });
    await backupJob(ns, "noclass", { sourcePvc: "data", repository: { name: "repo", namespace: ns } });
    const bj = await settled(ns, "noclass");
    expect(bj.status?.phase).toBe("Failed");
    expect(condition(bj, "SnapshotReady")).toMatchObject({ reason: "NoSnapshotClass" });
    expect(condition(bj, "SnapshotReady")?.message).toMatch(/No VolumeSnapshotClass for driver other\.csi\.example\.com/);
  });

  it("fails with the worker's reason when the repository password is wrong", async () => {
    await startWalle();
    const ns = await createNamespace("wrongpw");
    const repo = rest.repository(USER, "rest-secret", `wrongpw-${ns}`);
    await restic(["init"], { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD });
    await repositorySecret(ns, "repo", repo, "not the password");
    await pvcWithData(ns, "data", { a: "a" });
    await backupJob(ns, "wrong", { sourcePvc: "data", repository: { name: "repo", namespace: ns } });
    const bj = await settled(ns, "wrong");
    expect(bj.status?.phase).toBe("Failed");
    expect(condition(bj, "BackupState")?.reason).toBe("WrongPassword");
    expect(condition(bj, "BackupState")?.message).toMatch(/password/i);
    expect(JSON.stringify(bj)).not.toContain("not the password");
    await expectNoLeftovers([ns]);
  });

  it("into a shared repository, shows the tenant why it failed but never where the repository is", async () => {
    const walle = await startWalle();
    const ns = await createNamespace("shared-fail");
    const secretName = `wrongpw-${ns}`;
    // The wrong password for it: restic's error, and the worker's message from it, name the repository's URL.
    const repo = rest.repository(USER, "rest-secret", `shared-wrongpw-${ns}`);
    await restic(["init"], { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD });
    await repositorySecret("walle-system", secretName, repo, "not the password");
    onCleanupDelete(`/api/v1/namespaces/walle-system/secrets/${secretName}`);
    await pvcWithData(ns, "data", { a: "a" });
    const token = await caller(ns, "ci", { own: FORCE_BACKUPS, repositories: { verbs: ["backup"], names: [secretName] } });
    const res = await fetch(walle.url, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": `f-${ns}`,
        "ce-source": "/test",
        "ce-type": "io.ros.walle.backup.requested",
      },
      body: JSON.stringify({ namespace: ns, pvc: "data", repository: { name: secretName } }),
    });
    expect(res.status).toBe(202);
    const { backupJob: made } = (await res.json()) as { backupJob: { name: string } };
    const bj = await settled(ns, made.name);
    expect(condition(bj, "BackupState")).toMatchObject({
      reason: "WrongPassword",
      message: expect.stringContaining(`the repository at Secret walle-system/${secretName}`),
    });
    const events = await admin().get<{ items: unknown[] }>(`/apis/events.k8s.io/v1/namespaces/${ns}/events`);
    const seen = JSON.stringify([bj, events.items]);
    const location = new URL(repo.replace(/^rest:/, ""));
    for (const where of [location.host, location.pathname, `${USER}:`]) expect(seen).not.toContain(where);
  });
});

function onCleanupDelete(pathname: string): void {
  onTestFinished(async () => {
    await admin()
      .delete(pathname)
      .catch((e: unknown) => {
        if (!(e instanceof ApiError && e.code === 404)) throw e;
      });
  });
}

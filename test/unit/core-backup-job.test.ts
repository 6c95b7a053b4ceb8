// The BackupJob lifecycle as pure decisions: each phase, given what was observed, gives the right actions and
// status, without a cluster.
import { describe, expect, it } from "vitest";
import { BackupJobPhase, type BackupJobStatus } from "../../lib/api/backup-job.ts";
import type { BackupJob } from "../../lib/api/parse.ts";
import {
  backupJobReads,
  backupJobReconciler,
  decideBackupJob,
  largestQuantity,
  quantityBytes,
  snapshotClassFor,
  type BackupJobWorld,
} from "../../lib/core/backup-job.ts";
import type { Action } from "../../lib/core/decision.ts";
import type { Manifest } from "../../lib/core/builders.ts";
import { decideBackupSet, expectedJobs } from "../../lib/core/backup-set.ts";
import { backupJobChildNames, boundedName } from "../../lib/core/names.ts";
import type { Job, Pod, Pvc, VolumeSnapshot, VolumeSnapshotContent } from "../../lib/core/objects.ts";
import { targetOf, updateMovesBackupJob } from "../../lib/core/routing.ts";
import { workerHostname } from "../../lib/restic/locks.ts";
import { selectorString } from "../../lib/core/selectors.ts";
import { mergePatch } from "../../lib/k8s/actions.ts";
import { encodeResult } from "../../lib/restic/result.ts";
import { testConfig } from "../support/config.ts";
import { ownWorkerPod, workerJobSeen } from "../support/worker-pods.ts";

const now = new Date("2026-11-26T10:00:00Z");
const config = testConfig;
const job = {
  namespace: "app",
  name: "nightly",
  uid: "0b1c2d3e-aaaa-bbbb-cccc-000000000001",
  generation: 1,
  labels: {},
  creationTimestamp: "2026-11-26T09:59:00Z",
};
const names = backupJobChildNames(job);

const pvc: Pvc = {
  metadata: { name: "data", namespace: "app" },
  spec: { storageClassName: "fast", resources: { requests: { storage: "5Gi" } } },
  status: { phase: "Bound", capacity: { storage: "5Gi" } },
};
const storageClass = { metadata: { name: "fast" }, provisioner: "csi.example.com" };
const defaultClass = {
  metadata: { name: "snaps", annotations: { "snapshot.storage.kubernetes.io/is-default-class": "true" } },
  driver: "csi.example.com",
  deletionPolicy: "Delete" as const,
};

function world(status: BackupJobStatus, extra: Partial<BackupJobWorld> = {}, repoNs?: string): BackupJobWorld {
  return { job, spec: { sourcePvc: "data", repository: { name: "repo", ...(repoNs ? { namespace: repoNs } : { namespace: "app" }) } }, status, ...extra };
}

const creates = (actions: readonly Action[]) => actions.filter((a): a is Extract<Action, { op: "create" }> => a.op === "create").map((a) => a.manifest);
const kindsCreated = (actions: readonly Action[]) => creates(actions).map((m) => `${m.kind} ${m.metadata.namespace ?? ""}/${m.metadata.name}`);

const readySnapshot = (ns: string, name: string): VolumeSnapshot => ({
  metadata: { name, namespace: ns },
  spec: { source: { persistentVolumeClaimName: "data" } },
  status: { readyToUse: true, restoreSize: "1048576", creationTime: "2026-11-26T09:59:30Z", boundVolumeSnapshotContentName: "snapcontent-1" },
});

const finishedJob = (type: "Complete" | "Failed"): Job =>
  workerJobSeen(names.job, { conditions: [{ type, status: "True", reason: type === "Failed" ? "PodFailurePolicy" : "Completed", message: "x" }] });
const pod = (message: string, exitCode = 0, name = "p", created = "2026-11-26T09:59:40Z"): Pod =>
  ownWorkerPod(
    {
      metadata: { name, creationTimestamp: created },
      status: {
        phase: exitCode ? "Failed" : "Succeeded",
        containerStatuses: [
          { name: "worker", image: "walle-worker", imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode, message } } },
        ],
      },
    },
    names.job,
  );

describe("decideBackupJob", () => {
  describe("waits for its turn at the repository, decided from the Jobs in the cluster", () => {
    const ready = (repositoryJobs: Job[]) =>
      decideBackupJob(
        world(
          { phase: "CreatingSnapshot", startTime: "2026-11-26T09:59:30Z" },
          { pvc, sourceSnapshot: readySnapshot("app", names.sourceSnapshot), repositoryJobs },
        ),
        config,
        now,
      );
    const active = (name: string, type: string): Job => ({
      metadata: { name, labels: { "ros.io/backup-job-type": type, "ros.io/repository": "repo" } },
      status: { active: 1 },
    });
    const done = (name: string, type: string): Job => ({ ...active(name, type), status: { succeeded: 1, conditions: [{ type: "Complete", status: "True" }] } });

    it("while a prune holds the repository, no worker starts and BackupState says why", () => {
      const d = ready([active("walle-prune-nightly-1", "prune")]);
      expect(kindsCreated(d.actions)).toEqual([]);
      expect(d.status.phase).toBe("CreatingSnapshot");
      expect(d.status.conditions?.find((c) => c.type === "BackupState")).toMatchObject({
        status: "False",
        reason: "RepositoryBusy",
        message: "Waiting for prune Job app/walle-prune-nightly-1 to finish with repository repo.",
      });
      expect(d.requeueAfter).toBe(30);
    });

    it("at most maxWorkersPerRepository workers at once; finished ones and its own do not count", () => {
      const four = ["a", "b", "c", "d"].map((n) => active(`walle-backup-${n}`, "backup"));
      expect(kindsCreated(ready(four).actions)).toEqual([]);
      expect(ready(four).status.conditions?.find((c) => c.type === "BackupState")?.message).toMatch(
        /4 workers already use repository repo \(at most 4 at once\)/,
      );
      const room = ready([...four.slice(0, 3), done("walle-backup-e", "backup"), active(names.job, "backup"), done("walle-prune-x", "prune")]);
      expect(kindsCreated(room.actions)).toEqual([`PersistentVolumeClaim app/${names.pvc}`, "ServiceAccount app/walle-worker", `Job app/${names.job}`]);
    });

    it("creates the repository only when no other worker uses it: two restic inits at once break it", () => {
      const initEnv = (repositoryJobs: Job[]) => {
        const job = creates(ready(repositoryJobs).actions).find((m) => m.kind === "Job") as
          (Manifest & { spec: { template: { spec: { containers: { env?: { name: string; value?: string }[] }[] } } } }) | undefined;
        const env = job?.spec.template.spec.containers[0]?.env ?? [];
        return Object.fromEntries(env.filter((e) => e.name === "INITIALIZE_REPO" || e.name === "REPOSITORY_WAIT").map((e) => [e.name, e.value]));
      };
      // Alone (a finished backup and a prune that ended do not count): the repository Secret's INITIALIZE_REPO decides.
      expect(initEnv([done("walle-backup-e", "backup"), done("walle-prune-x", "prune")])).toEqual({});
      // Beside a running backup or restore: it waits for the repository instead of creating it.
      for (const other of [active("walle-backup-a", "backup"), active("walle-restore-b", "restore")]) {
        expect(initEnv([other])).toEqual({ INITIALIZE_REPO: "false", REPOSITORY_WAIT: "10m" });
      }
    });
  });

  it("fails a BackupJob whose PVC does not exist, naming it", () => {
    const d = decideBackupJob(world({}, { pvc: null, snapshotClasses: [], storageClass: null, sourceSnapshot: null }), config, now);
    expect(d.status.phase).toBe(BackupJobPhase.Failed);
    expect(d.actions).toEqual([]);
    const backupState = d.status.conditions?.find((c) => c.type === "BackupState");
    expect(backupState).toMatchObject({ status: "False", reason: "PvcNotFound", message: "PersistentVolumeClaim app/data was not found." });
    expect(d.events[0]).toMatchObject({ type: "Warning", reason: "BackupFailed" });
  });

  it("fails with a clear message when no snapshot class fits the PVC's driver", () => {
    const d = decideBackupJob(world({}, { pvc, storageClass, snapshotClasses: [], sourceSnapshot: null }), config, now);
    expect(d.status.phase).toBe(BackupJobPhase.Failed);
    expect(d.status.conditions?.find((c) => c.type === "SnapshotReady")?.message).toMatch(
      /No VolumeSnapshotClass for driver csi\.example\.com \(storage class fast\)/,
    );
  });

  it("creates one VolumeSnapshot with a deterministic name and moves to CreatingSnapshot", () => {
    const d = decideBackupJob(world({}, { pvc, storageClass, snapshotClasses: [defaultClass], sourceSnapshot: null }), config, now);
    expect(d.status.phase).toBe(BackupJobPhase.CreatingSnapshot);
    expect(d.status.startTime).toBe("2026-11-26T10:00:00Z");
    expect(kindsCreated(d.actions)).toEqual([`VolumeSnapshot app/${names.sourceSnapshot}`]);
    const vs = creates(d.actions)[0] as Manifest;
    expect(vs.spec).toEqual({ source: { persistentVolumeClaimName: "data" }, volumeSnapshotClassName: "snaps" });
    expect(vs.metadata.ownerReferences?.[0]).toMatchObject({ kind: "BackupJob", name: "nightly", controller: true });
    // The same step again (a duplicate event) finds the snapshot and creates nothing more.
    const again = decideBackupJob(
      world({}, { pvc, storageClass, snapshotClasses: [defaultClass], sourceSnapshot: readySnapshot("app", names.sourceSnapshot) }),
      config,
      now,
    );
    expect(kindsCreated(again.actions)).toEqual([]);
  });

  it("prefers the operator's snap_class_mappings over the default class", () => {
    expect(snapshotClassFor(pvc, storageClass, [defaultClass], { snapClassMappings: [{ storage_class: "fast", snapshot_class: "mapped" }] })).toEqual({
      name: "mapped",
    });
    expect(snapshotClassFor(pvc, storageClass, [defaultClass, { ...defaultClass, metadata: { ...defaultClass.metadata, name: "other" } }], config)).toEqual({
      error: expect.stringMatching(/Several VolumeSnapshotClasses/),
    });
  });

  it("waits for the snapshot, then makes a PVC from it and a hardened worker Job", () => {
    const waiting = decideBackupJob(
      world(
        { phase: "CreatingSnapshot", startTime: "2026-11-26T09:59:30Z" },
        { pvc, sourceSnapshot: { ...readySnapshot("app", names.sourceSnapshot), status: {} } },
      ),
      config,
      now,
    );
    expect(waiting.actions).toEqual([]);
    expect(waiting.status.phase).toBe("CreatingSnapshot");

    const d = decideBackupJob(
      world({ phase: "CreatingSnapshot", startTime: "2026-11-26T09:59:30Z" }, { pvc, sourceSnapshot: readySnapshot("app", names.sourceSnapshot) }),
      config,
      now,
    );
    expect(d.status.phase).toBe(BackupJobPhase.WaitingBackup);
    expect(kindsCreated(d.actions)).toEqual([`PersistentVolumeClaim app/${names.pvc}`, "ServiceAccount app/walle-worker", `Job app/${names.job}`]);
    const [claim, account, worker] = creates(d.actions);
    // Its own service account, which no RBAC names and which mounts no token.
    expect(account).toMatchObject({
      kind: "ServiceAccount",
      metadata: { name: "walle-worker", labels: { "app.kubernetes.io/created-by": "walle" } },
      automountServiceAccountToken: false,
    });
    // The larger of the snapshot's restoreSize (1 MiB here) and the source PVC's 5Gi: never less than restoreSize.
    expect(claim?.spec).toMatchObject({
      dataSource: { kind: "VolumeSnapshot", name: names.sourceSnapshot },
      resources: { requests: { storage: "5Gi" } },
      storageClassName: "fast",
    });
    const pod = (worker?.spec as { template: { spec: Record<string, unknown> & { containers: Record<string, unknown>[]; volumes: unknown[] } } }).template.spec;
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.serviceAccountName).toBe("walle-worker");
    // The hostname restic writes into the worker's locks names the Job and the cluster; retries wait for the last
    // attempt to end, so its lock is known to be stale.
    expect(pod.hostname).toBe(workerHostname(config.clusterName, names.job));
    expect((worker?.spec as { podReplacementPolicy?: string }).podReplacementPolicy).toBe("Failed");
    // Its own namespace's repository: the tenant may see where it is.
    expect(JSON.stringify(pod.containers)).not.toContain("REPOSITORY_SHOWN_AS");
    // No API token, but one bound to the pod for the progress audience alone, when progress has a sink.
    const withSink = creates(
      decideBackupJob(
        world({ phase: "CreatingSnapshot", startTime: "2026-11-26T09:59:30Z" }, { pvc, sourceSnapshot: readySnapshot("app", names.sourceSnapshot) }),
        { ...config, progressSinkUrl: "http://walle-reconcile.walle-system.svc", progressIntervalSeconds: 2 },
        now,
      ).actions,
    )[2];
    const sinkPod = (withSink?.spec as { template: { spec: { volumes: unknown[]; containers: { env: { name: string; value: string }[] }[] } } }).template.spec;
    expect(sinkPod.volumes).toContainEqual({
      name: "progress-token",
      projected: { sources: [{ serviceAccountToken: { audience: "walle-progress", expirationSeconds: 3600, path: "token" } }] },
    });
    expect(sinkPod.containers[0]?.env).toContainEqual({ name: "PROGRESS_TOKEN_FILE", value: "/var/run/secrets/walle/progress/token" });
    expect(sinkPod.containers[0]?.env).toContainEqual({ name: "PROGRESS_INTERVAL", value: "2s" });
    expect(JSON.stringify(pod.containers)).not.toContain("PROGRESS_INTERVAL");
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: "RuntimeDefault" } });
    const c = pod.containers[0] as { envFrom: unknown; env: { name: string; value: string }[]; securityContext: unknown; volumeMounts: unknown[] };
    expect(c.envFrom).toEqual([{ prefix: "SECRET_", secretRef: { name: "repo" } }]);
    expect(c.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ["ALL"] } });
    expect(c.volumeMounts).toContainEqual({ name: "volume", mountPath: "/data", readOnly: true });
    expect(pod.volumes).toContainEqual({ name: "volume", persistentVolumeClaim: { claimName: names.pvc, readOnly: true } });
    expect(Object.fromEntries(c.env.map((e) => [e.name, e.value]))).toMatchObject({
      SOURCE_PATH: "/data",
      PVC_NAME: "data",
      PVC_NAMESPACE: "app",
      CLUSTER_NAME: "prod",
      SNAPSHOT_TIME: "2026-11-26T09:59:30Z",
    });
    expect(JSON.stringify(worker)).not.toMatch(/RESTIC_PASSWORD/);
    expect((worker?.spec as { activeDeadlineSeconds: number }).activeDeadlineSeconds).toBe(3600);
    // The repository's namespace was not annotated: the worker is unprivileged, and the status says what that costs.
    expect(d.status.conditions?.find((c) => c.type === "FullFidelity")).toMatchObject({
      status: "False",
      reason: "UnprivilegedWorker",
      message: expect.stringMatching(/any file it cannot read fails the backup as Incomplete/),
    });
  });

  describe("runs the worker with full fidelity only where an admin allows it", () => {
    const ready = (extra: Partial<BackupJobWorld>, repoNs?: string, spec: Partial<BackupJobWorld["spec"]> = {}) => {
      const w = world(
        { phase: "CreatingSnapshot", startTime: "2026-11-26T09:59:30Z" },
        {
          pvc,
          sourceSnapshot: readySnapshot("app", names.sourceSnapshot),
          movedSnapshot: readySnapshot(repoNs ?? "app", names.movedSnapshot),
          repositoryJobs: [],
          ...extra,
        },
        repoNs,
      );
      const d = decideBackupJob({ ...w, spec: { ...w.spec, ...spec } }, config, now);
      const worker = creates(d.actions).find((m) => m.kind === "Job");
      const podSpec = (worker?.spec as { template: { spec: { securityContext: unknown; containers: { securityContext: unknown }[] } } }).template.spec;
      return {
        pod: podSpec.securityContext,
        container: podSpec.containers[0]?.securityContext,
        fidelity: d.status.conditions?.find((c) => c.type === "FullFidelity"),
      };
    };
    const privileged = {
      pod: { runAsUser: 0, runAsGroup: 0, runAsNonRoot: false },
      container: { capabilities: { drop: ["ALL"], add: ["DAC_OVERRIDE"] }, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false },
    };

    it("the install namespace's repository: root with DAC_OVERRIDE alone", () => {
      const r = ready({}, "walle-system");
      expect(r).toMatchObject({ ...privileged, fidelity: { status: "True", reason: "PrivilegedWorker" } });
    });

    it("a namespace annotated ros.io/privileged-workers=true: the same", () => {
      const r = ready({ workerNamespace: { metadata: { name: "app", annotations: { "ros.io/privileged-workers": "true" } } } });
      expect(r).toMatchObject({ ...privileged, fidelity: { status: "True" } });
    });

    it("a security context on the BackupJob wins, even in the install namespace", () => {
      const r = ready({}, "walle-system", { workerSecurityContext: { runAsUser: 999, fsGroup: 999 } });
      expect(r).toMatchObject({
        pod: { runAsNonRoot: true, runAsUser: 999, runAsGroup: 999, fsGroup: 999 },
        container: { capabilities: { drop: ["ALL"] } },
        fidelity: { status: "False", message: expect.stringMatching(/as its workerSecurityContext says/) },
      });
      expect((r.container as { capabilities: Record<string, unknown> }).capabilities.add).toBeUndefined();
    });
  });

  it("reads the worker's namespace with the repository's Jobs, unless the install namespace or a given context decides", () => {
    const bj = (repoNs: string, workerSecurityContext?: { runAsUser: number }): BackupJob => ({
      apiVersion: "ros.io/v1",
      kind: "BackupJob",
      metadata: { name: job.name, namespace: job.namespace, uid: job.uid },
      spec: { sourcePvc: "data", repository: { name: "repo", namespace: repoNs }, ...(workerSecurityContext ? { workerSecurityContext } : {}) },
      status: { phase: "CreatingSnapshot" },
    });
    const seen = { sourceSnapshot: readySnapshot("app", names.sourceSnapshot) };
    expect(backupJobReads(bj("app"), seen, config)).toMatchObject({ workerNamespace: { get: "Namespace", name: "app" } });
    expect(Object.keys(backupJobReads(bj("app", { runAsUser: 999 }), seen, config))).toEqual(["repositoryJobs"]);
    const moved = { ...seen, movedSnapshot: readySnapshot("walle-system", names.movedSnapshot), movedContent: null, sourceContent: null };
    expect(Object.keys(backupJobReads(bj("walle-system"), moved, config))).toEqual(["repositoryJobs"]);
  });

  it("fails when the storage refuses the snapshot, waits out the snapshot controller's own errors, and fails if not ready in time", () => {
    const erred = {
      ...readySnapshot("app", names.sourceSnapshot),
      status: { readyToUse: false, boundVolumeSnapshotContentName: "snapcontent-1", error: { message: "disk full" } },
    };
    const refusedContent: VolumeSnapshotContent = {
      metadata: { name: "snapcontent-1" },
      spec: { driver: "csi.example.com", deletionPolicy: "Delete", source: { volumeHandle: "vol-1" } },
      status: { readyToUse: false, error: { message: "disk full" } },
    };
    const inFlight: BackupJob = {
      apiVersion: "ros.io/v1",
      kind: "BackupJob",
      metadata: { name: job.name, namespace: job.namespace, uid: job.uid },
      spec: { sourcePvc: "data", repository: { name: "repo", namespace: "app" } },
      status: { phase: "CreatingSnapshot" },
    };
    // An erred snapshot: its content is read to tell the storage's refusal from the controller's retries.
    expect(backupJobReads(inFlight, { sourceSnapshot: erred }, config)).toEqual({ sourceContent: { get: "VolumeSnapshotContent", name: "snapcontent-1" } });
    const err = decideBackupJob(
      world({ phase: "CreatingSnapshot", startTime: "2026-11-26T09:59:30Z" }, { pvc, sourceSnapshot: erred, sourceContent: refusedContent }),
      config,
      now,
    );
    expect(err.status.phase).toBe("Failed");
    expect(err.status.conditions?.find((c) => c.type === "SnapshotReady")).toMatchObject({
      reason: "SnapshotFailed",
      message: `VolumeSnapshot app/${names.sourceSnapshot} failed: disk full`,
    });
    // The controller's complaint alone ("VolumeSnapshotContent is missing" while its cache catches up): still waiting, and it shows.
    const missing = { ...erred, status: { readyToUse: false, error: { message: "VolumeSnapshotContent is missing" } } };
    const waiting = decideBackupJob(
      world(
        { phase: "CreatingSnapshot", startTime: "2026-11-26T09:59:30Z" },
        { pvc, sourceSnapshot: missing, sourceContent: { ...refusedContent, status: { readyToUse: false } } },
      ),
      config,
      now,
    );
    expect(waiting.status.phase).toBe("CreatingSnapshot");
    expect(waiting.status.conditions?.find((c) => c.type === "SnapshotReady")).toMatchObject({
      status: "False",
      reason: "Creating",
      message: expect.stringContaining("VolumeSnapshotContent is missing"),
    });
    const gaveUp = decideBackupJob(world({ phase: "CreatingSnapshot", startTime: "2026-11-26T09:40:00Z" }, { pvc, sourceSnapshot: missing }), config, now);
    expect(gaveUp.status.conditions?.find((c) => c.type === "SnapshotReady")).toMatchObject({
      reason: "SnapshotTimeout",
      message: expect.stringMatching(/Last error: .*VolumeSnapshotContent is missing$/),
    });
    const late = decideBackupJob(
      world(
        { phase: "CreatingSnapshot", startTime: "2026-11-26T09:40:00Z" },
        { pvc, sourceSnapshot: { ...readySnapshot("app", names.sourceSnapshot), status: {} } },
      ),
      config,
      now,
    );
    expect(late.status.phase).toBe("Failed");
    expect(late.status.conditions?.find((c) => c.type === "BackupState")?.message).toMatch(/^Stuck in CreatingSnapshot/);
  });

  it("moves the snapshot into the repository namespace when the repository lives elsewhere (docs/architecture.md, Security)", () => {
    const content: VolumeSnapshotContent = {
      metadata: { name: "snapcontent-1" },
      spec: { driver: "csi.example.com", deletionPolicy: "Delete", volumeSnapshotClassName: "snaps", source: { volumeHandle: "vol-1" } },
      status: { snapshotHandle: "snap-handle-1", readyToUse: true },
    };
    const base = { pvc, sourceSnapshot: readySnapshot("app", names.sourceSnapshot), sourceContent: content };
    const step1 = decideBackupJob(
      world({ phase: "CreatingSnapshot", startTime: "2026-11-26T09:59:30Z" }, { ...base, movedContent: null, movedSnapshot: null }, "walle-system"),
      config,
      now,
    );
    expect(kindsCreated(step1.actions)).toEqual([`VolumeSnapshotContent /${names.movedContent}`, `VolumeSnapshot walle-system/${names.movedSnapshot}`]);
    const moved = creates(step1.actions)[0];
    expect(moved?.spec).toMatchObject({
      source: { snapshotHandle: "snap-handle-1" },
      deletionPolicy: "Delete",
      driver: "csi.example.com",
      volumeSnapshotRef: { namespace: "walle-system", name: names.movedSnapshot },
    });
    // Cross-namespace children carry labels, not owner references (the GC would treat those as dangling).
    expect(moved?.metadata.ownerReferences).toBeUndefined();
    expect(moved?.metadata.labels).toMatchObject({ "ros.io/backup-job": "nightly", "ros.io/owner-namespace": "app" });
    expect(step1.status.phase).toBe("CreatingSnapshot");
    // What the controllers need to judge and delete it: the source's volume mode and the deletion secret.
    const secret = {
      "snapshot.storage.kubernetes.io/deletion-secret-name": "csi-creds",
      "snapshot.storage.kubernetes.io/deletion-secret-namespace": "kube-system",
    };
    const withSecret = {
      ...content,
      metadata: { name: "snapcontent-1", annotations: { ...secret, "unrelated.example.com/note": "x" } },
      spec: { ...content.spec, sourceVolumeMode: "Filesystem" as const },
    };
    const carried = creates(
      decideBackupJob(
        world(
          { phase: "CreatingSnapshot", startTime: "2026-11-26T09:59:30Z" },
          { ...base, sourceContent: withSecret, movedContent: null, movedSnapshot: null },
          "walle-system",
        ),
        config,
        now,
      ).actions,
    )[0];
    expect(carried?.metadata.annotations).toEqual(secret);
    expect(carried?.spec).toMatchObject({ sourceVolumeMode: "Filesystem" });
    expect(moved?.metadata.annotations).toBeUndefined();

    const movedReady = { ...readySnapshot("walle-system", names.movedSnapshot), spec: { source: { volumeSnapshotContentName: names.movedContent } } };
    const step2 = decideBackupJob(
      world(
        { phase: "CreatingSnapshot", startTime: "2026-11-26T09:59:30Z" },
        { ...base, movedContent: { ...content, metadata: { name: names.movedContent } }, movedSnapshot: movedReady },
        "walle-system",
      ),
      config,
      now,
    );
    expect(step2.actions.map((a) => `${a.op} ${a.op === "create" ? a.manifest.kind : a.target.kind}`)).toEqual([
      "patch VolumeSnapshotContent",
      "delete VolumeSnapshotContent",
      "delete VolumeSnapshot",
      "create PersistentVolumeClaim",
      "create ServiceAccount",
      "create Job",
    ]);
    expect(step2.actions[0]).toMatchObject({ patch: { spec: { deletionPolicy: "Retain" } } });
    expect(kindsCreated(step2.actions)).toEqual([
      `PersistentVolumeClaim walle-system/${names.pvc}`,
      "ServiceAccount walle-system/walle-worker",
      `Job walle-system/${names.job}`,
    ]);
    // The tenant sees the worker's result: the shared repository is named by its Secret, never by where it is.
    const env = (m: Manifest | undefined) =>
      (m?.spec as { template: { spec: { containers: { env: { name: string; value: string }[] }[] } } } | undefined)?.template.spec.containers[0]?.env ?? [];
    expect(env(creates(step2.actions)[2])).toContainEqual({ name: "REPOSITORY_SHOWN_AS", value: "Secret walle-system/repo" });
    expect(step2.status.phase).toBe("WaitingBackup");
    // The original content already being deleted (a run cut short after its DELETE; the controller's finalizer holds
    // it while its snapshot lives): it is not deleted again, and the snapshot's deletion is what comes next.
    const deleting = {
      ...content,
      metadata: { name: "snapcontent-1", deletionTimestamp: "2026-11-26T09:59:50Z" },
      spec: { ...content.spec, deletionPolicy: "Retain" as const },
    };
    const resumed = decideBackupJob(
      world(
        { phase: "CreatingSnapshot", startTime: "2026-11-26T09:59:30Z" },
        { ...base, sourceContent: deleting, movedContent: { ...content, metadata: { name: names.movedContent } }, movedSnapshot: movedReady },
        "walle-system",
      ),
      config,
      now,
    );
    expect(resumed.actions.map((a) => `${a.op} ${a.op === "create" ? a.manifest.kind : a.target.kind}`)).toEqual([
      "delete VolumeSnapshot",
      "create PersistentVolumeClaim",
      "create ServiceAccount",
      "create Job",
    ]);
  });

  it("reads the worker's result into status and finishes", () => {
    const result = encodeResult({
      command: "backup",
      outcome: "Succeeded",
      reason: "Completed",
      message: "Backed up 3 files.",
      snapshotId: "a".repeat(64),
      exitCode: 0,
      exitMeaning: "ok",
      backup: { filesNew: 3, filesChanged: 0, filesUnmodified: 0, dataAdded: 1234, bytesProcessed: 2048, durationSeconds: 1.5 },
      startedAt: "2026-11-26T09:59:40Z",
      finishedAt: "2026-11-26T09:59:50Z",
    });
    const d = decideBackupJob(
      world({ phase: "BackingUp", startTime: "2026-11-26T09:59:30Z" }, { workerJob: finishedJob("Complete"), workerPods: [pod(result)] }),
      config,
      now,
    );
    expect(d.status.phase).toBe("Finished");
    expect(d.status.snapshotId).toBe("a".repeat(64));
    expect(d.status.summary).toEqual({ filesNew: 3, filesChanged: 0, filesUnmodified: 0, dataAdded: 1234, totalBytesProcessed: 2048, totalDuration: 1.5 });
    expect(d.status.conditions?.find((c) => c.type === "BackupState")).toMatchObject({ status: "True", reason: "Completed" });
    expect(d.events).toEqual([{ type: "Normal", reason: "BackupFinished", note: "Backed up 3 files. Snapshot aaaaaaaa." }]);
  });

  describe("takes the result only from the Job's own pod (a forged one is not believed)", () => {
    const real = encodeResult({
      command: "backup",
      outcome: "Succeeded",
      reason: "Completed",
      message: "Backed up 3 files.",
      snapshotId: "a".repeat(64),
      exitCode: 0,
      exitMeaning: "ok",
      startedAt: "2026-11-26T09:59:40Z",
      finishedAt: "2026-11-26T09:59:50Z",
    });
    const forgedResult = encodeResult({
      command: "backup",
      outcome: "Succeeded",
      reason: "Completed",
      message: "Backed up 1 file.",
      snapshotId: "f".repeat(64),
      exitCode: 0,
      exitMeaning: "ok",
      startedAt: "2026-11-26T09:59:41Z",
      finishedAt: "2026-11-26T09:59:51Z",
    });
    // Newer than the real pod, labelled as the Job's: each differs from the Job's own pod in one way.
    const newer = pod(forgedResult, 0, "forged", "2026-11-26T09:59:59Z");
    const forgeries: [string, Pod, string][] = [
      ["no controller", { ...newer, metadata: { ...newer.metadata, ownerReferences: [] } }, "its controller is not the Job"],
      [
        "another Job's uid",
        {
          ...newer,
          metadata: { ...newer.metadata, ownerReferences: [{ apiVersion: "batch/v1", kind: "Job", name: names.job, uid: "other", controller: true }] },
        },
        "its controller is not the Job",
      ],
      ["another image", { ...newer, spec: { containers: [{ name: "worker", image: "busybox" }] } }, "its worker container's image is not the Job's"],
      [
        "an ephemeral container",
        { ...newer, spec: { ...newer.spec, ephemeralContainers: [{ name: "debug", image: "busybox" }] } } as Pod,
        "it has ephemeral containers",
      ],
      [
        "a lifecycle hook",
        { ...newer, spec: { ...newer.spec, containers: newer.spec.containers.map((c) => ({ ...c, lifecycle: { preStop: { exec: { command: ["sh"] } } } })) } },
        "its worker container has a lifecycle hook",
      ],
      ["a shared process namespace", { ...newer, spec: { ...newer.spec, shareProcessNamespace: true } }, "it shares its process namespace"],
      [
        "a setting of its own",
        {
          ...newer,
          spec: {
            ...newer.spec,
            containers: newer.spec.containers.map((c) => ({ ...c, env: [...(c.env ?? []), { name: "NODE_OPTIONS", value: "--require /x.js" }] })),
          },
        },
        "its worker container's env is not the Job's",
      ],
      [
        "another volume at the same path",
        { ...newer, spec: { ...newer.spec, volumes: [{ name: "volume", persistentVolumeClaim: { claimName: "another-pvc" } }] } },
        "its volumes are not the Job's",
      ],
    ];
    it.each(forgeries)("a newer pod with %s is ignored, and the real worker's result stands", (_what, forged, why) => {
      const d = decideBackupJob(world({ phase: "BackingUp" }, { workerJob: finishedJob("Complete"), workerPods: [pod(real), forged] }), config, now);
      expect(d.status).toMatchObject({ phase: "Finished", snapshotId: "a".repeat(64) });
      const alone = decideBackupJob(world({ phase: "BackingUp" }, { workerJob: finishedJob("Complete"), workerPods: [forged] }), config, now);
      expect(alone.status.phase).toBe("Failed");
      expect(alone.status.conditions?.find((c) => c.type === "BackupState")).toMatchObject({
        status: "False",
        reason: "NoResult",
        message: `Worker Job app/${names.job} completed, but no pod of its own left a result. Not taken: forged: ${why}.`,
      });
      expect(alone.status.snapshotId).toBeUndefined();
    });
  });

  it("takes the result of its own pod with what a mutating webhook added beside the worker (a volume and its mount)", () => {
    const real = encodeResult({
      command: "backup",
      outcome: "Succeeded",
      reason: "Completed",
      message: "Backed up 3 files.",
      snapshotId: "a".repeat(64),
      exitCode: 0,
      exitMeaning: "ok",
      startedAt: "2026-11-26T09:59:40Z",
      finishedAt: "2026-11-26T09:59:50Z",
    });
    const own = pod(real);
    const injected: Pod = {
      ...own,
      spec: {
        ...own.spec,
        containers: own.spec.containers.map((c) => ({ ...c, volumeMounts: [...(c.volumeMounts ?? []), { name: "ca-bundle", mountPath: "/etc/ssl/corp" }] })),
        volumes: [...(own.spec.volumes ?? []), { name: "ca-bundle", configMap: { name: "corp-ca" } }],
      },
    };
    const d = decideBackupJob(world({ phase: "BackingUp" }, { workerJob: finishedJob("Complete"), workerPods: [injected] }), config, now);
    expect(d.status).toMatchObject({ phase: "Finished", snapshotId: "a".repeat(64) });
  });

  it("a Job Complete without a decodable result is Failed/NoResult, never Finished", () => {
    const d = decideBackupJob(world({ phase: "BackingUp" }, { workerJob: finishedJob("Complete"), workerPods: [pod("not a result")] }), config, now);
    expect(d.status.phase).toBe("Failed");
    expect(d.status.conditions?.find((c) => c.type === "BackupState")).toMatchObject({
      reason: "NoResult",
      message: `Worker Job app/${names.job} completed, but no pod of its own left a result. Its termination message is not a worker result: not a result`,
    });
    expect(d.events).toEqual([expect.objectContaining({ type: "Warning", reason: "BackupFailed" })]);
    const noPods = decideBackupJob(world({ phase: "BackingUp" }, { workerJob: finishedJob("Complete"), workerPods: [] }), config, now);
    expect(noPods.status.conditions?.find((c) => c.type === "BackupState")?.reason).toBe("NoResult");
  });

  it("fails with the worker's own reason, e.g. a wrong password", () => {
    const result = encodeResult({
      command: "backup",
      outcome: "Failed",
      reason: "WrongPassword",
      message: "The repository password is wrong.",
      exitCode: 12,
      exitMeaning: "wrong password",
      startedAt: "2026-11-26T09:59:40Z",
      finishedAt: "2026-11-26T09:59:50Z",
    });
    const d = decideBackupJob(world({ phase: "BackingUp" }, { workerJob: finishedJob("Failed"), workerPods: [pod(result, 12)] }), config, now);
    expect(d.status.phase).toBe("Failed");
    expect(d.status.conditions?.find((c) => c.type === "BackupState")).toMatchObject({
      status: "False",
      reason: "WrongPassword",
      message: "The repository password is wrong.",
    });
  });

  it("an incomplete backup by an unprivileged worker says how to make it complete", () => {
    const result = encodeResult({
      command: "backup",
      outcome: "Failed",
      reason: "Incomplete",
      message: "2 files could not be read; the snapshot was made without them. First: open pgdata: permission denied.",
      exitCode: 3,
      exitMeaning: "incomplete",
      snapshotId: "a".repeat(64),
      startedAt: "2026-11-26T09:59:40Z",
      finishedAt: "2026-11-26T09:59:50Z",
    });
    const unprivileged = {
      type: "FullFidelity",
      status: "False",
      reason: "UnprivilegedWorker",
      message: "…",
      lastTransitionTime: "2026-11-26T09:59:35Z",
    } as const;
    const d = decideBackupJob(
      world({ phase: "BackingUp", conditions: [unprivileged] }, { workerJob: finishedJob("Failed"), workerPods: [pod(result, 3)] }),
      config,
      now,
    );
    expect(d.status).toMatchObject({ phase: "Failed", snapshotId: "a".repeat(64) });
    expect(d.status.conditions?.find((c) => c.type === "BackupState")?.message).toBe(
      "2 files could not be read; the snapshot was made without them. First: open pgdata: permission denied. The worker ran unprivileged (see condition " +
        "FullFidelity): give the BackupJob a workerSecurityContext with the application's user, or ask an admin to allow full-fidelity workers in namespace app (annotation ros.io/privileged-workers=true).",
    );
    const privileged = decideBackupJob(
      world(
        { phase: "BackingUp", conditions: [{ ...unprivileged, status: "True", reason: "PrivilegedWorker" }] },
        { workerJob: finishedJob("Failed"), workerPods: [pod(result, 3)] },
      ),
      config,
      now,
    );
    expect(privileged.status.conditions?.find((c) => c.type === "BackupState")?.message).toMatch(/permission denied\.$/);
  });

  it("cleans up once, by name, after a terminal phase", () => {
    const d = decideBackupJob(world({ phase: "Finished" }, {}, "walle-system"), config, now);
    expect(d.actions.map((a) => (a.op === "delete" ? `${a.target.kind} ${a.target.namespace}/${a.target.name}` : a.op))).toEqual([
      `Job walle-system/${names.job}`,
      `PersistentVolumeClaim walle-system/${names.pvc}`,
      `VolumeSnapshot app/${names.sourceSnapshot}`,
      `VolumeSnapshot walle-system/${names.movedSnapshot}`,
    ]);
    const again = decideBackupJob(world(d.status, {}, "walle-system"), config, now);
    expect(again.actions).toEqual([]);
  });
});

describe("storage quantities", () => {
  it.each([
    ["5Gi", 5 * 2 ** 30],
    ["500M", 5e8],
    ["1048576", 1048576],
    ["1.5Gi", 1.5 * 2 ** 30],
    ["1e9", 1e9],
    ["2k", 2000],
    ["", undefined],
    ["5 GB", undefined],
    ["-1Gi", undefined],
  ])("%s is %s bytes", (q, bytes) => {
    expect(quantityBytes(q)).toBe(bytes);
  });

  it("the PVC from a snapshot asks for the largest size known, as it was written", () => {
    expect(largestQuantity(["1048576", undefined, "5Gi", "4G"])).toBe("5Gi");
    expect(largestQuantity(["6Gi", "5Gi"])).toBe("6Gi");
    expect(largestQuantity(["", "nonsense"])).toBeUndefined();
  });
});

describe("decideBackupSet", () => {
  it.each([
    [["Finished", "Finished"], "Finished", "2/2"],
    [["Finished", "Failed"], "FinishedWithFailures", "1/2"],
    [["Finished", "BackingUp"], "Running", "1/2"],
    [[undefined, "Finished"], "Running", "1/2"],
    [[], "Running", "0/0"],
  ] as const)("%j gives %s, %s", (phases, state, completions) => {
    const d = decideBackupSet(undefined, phases, now);
    expect(d.status.state).toBe(state);
    expect(d.status.completions).toBe(completions);
    expect(d.status.finishTime !== undefined).toBe(state !== "Running");
    expect(d.events.length).toBe(state === "Running" ? 0 : 1);
  });

  it.each([
    {
      name: "a run whose tick died after 3 of its 5 BackupJobs stays Running, counting the 2 not made",
      phases: ["Finished", "Finished", "Failed"],
      expected: 5,
      state: "Running",
      completions: "2/5",
      unstarted: 2,
    },
    {
      name: "with all 5 made and ended, it finishes",
      phases: ["Finished", "Finished", "Failed", "Finished", "Finished"],
      expected: 5,
      state: "FinishedWithFailures",
      completions: "4/5",
      unstarted: 0,
    },
    {
      name: "more BackupJobs than it said (one made by hand) all count",
      phases: ["Finished", "Finished"],
      expected: 1,
      state: "Finished",
      completions: "2/2",
      unstarted: 0,
    },
  ])("$name", ({ phases, expected, state, completions, unstarted }) => {
    const d = decideBackupSet(undefined, phases, now, undefined, expected);
    expect({ state: d.status.state, completions: d.status.completions, unstarted: d.status.statistics?.unstartedJobs }).toEqual({
      state,
      completions,
      unstarted,
    });
  });

  it.each([
    { annotations: { "ros.io/backup-jobs": "40" }, want: 40 },
    { annotations: { "ros.io/backup-jobs": "forty" }, want: undefined },
    { annotations: undefined, want: undefined },
  ])("reads the count the run said from $annotations", ({ annotations, want }) => {
    expect(expectedJobs({ metadata: { ...(annotations ? { annotations } : {}) } })).toBe(want);
  });
});

describe("routing events to their owner", () => {
  it.each([
    [
      { apiVersion: "ros.io/v1", kind: "BackupJob", metadata: { name: "j", namespace: "a" } },
      { kind: "BackupJob", namespace: "a", name: "j" },
    ],
    [
      { apiVersion: "ros.io/v1", kind: "BackupSet", metadata: { name: "s" } },
      { kind: "BackupSet", name: "s" },
    ],
    [{ apiVersion: "ros.io/v1", kind: "BackupSchedule", metadata: { name: "s" } }, undefined],
    [
      {
        apiVersion: "batch/v1",
        kind: "Job",
        metadata: { name: "w", namespace: "walle-system", labels: { "ros.io/backup-job": "j", "ros.io/owner-namespace": "a" } },
      },
      { kind: "BackupJob", namespace: "a", name: "j" },
    ],
    [
      {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "p", namespace: "a", ownerReferences: [{ apiVersion: "ros.io/v1", kind: "BackupJob", name: "j", controller: true }] },
      },
      { kind: "BackupJob", namespace: "a", name: "j" },
    ],
    [{ apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: { name: "x", namespace: "a" } }, undefined],
  ])("%j → %j", (obj, target) => {
    expect(targetOf(obj)).toEqual(target);
  });
});

describe("helpers", () => {
  it("keeps names within 63 characters, deterministically", () => {
    const long = boundedName(["walle", "a".repeat(60), "b".repeat(30)]);
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toBe(boundedName(["walle", "a".repeat(60), "b".repeat(30)]));
    expect(long).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    expect(boundedName(["walle", "short"])).toBe("walle-short");
  });

  it("writes a merge patch that removes what went away", () => {
    expect(mergePatch({ phase: "BackingUp", progress: { percent: 50 }, logs: "x" }, { phase: "Finished", logs: "x" })).toEqual({
      phase: "Finished",
      progress: null,
    });
    expect(mergePatch({ a: 1 }, { a: 1 })).toEqual({});
  });

  it("spells label selectors as the API reads them", () => {
    expect(
      selectorString({
        matchLabels: { a: "1" },
        matchExpressions: [
          { key: "b", operator: "In", values: ["x", "y"] },
          { key: "c", operator: "DoesNotExist" },
        ],
      }),
    ).toBe("a=1,b in (x,y),!c");
  });
});

describe("which BackupJob updates can move it on", () => {
  const bj = (phase: string | undefined, extra: { generation?: number; observedGeneration?: number; cleaned?: boolean } = {}) => ({
    apiVersion: "ros.io/v1",
    kind: "BackupJob",
    metadata: { name: "j", namespace: "a", generation: extra.generation ?? 1 },
    status: {
      ...(phase ? { phase } : {}),
      observedGeneration: extra.observedGeneration ?? 1,
      conditions: extra.cleaned ? [{ type: "CleanedUp", status: "True" }] : [],
    },
  });
  it.each([
    ["a new BackupJob", bj(undefined), true],
    ["NotStarted", bj("NotStarted"), true],
    ["waiting for its snapshot (the echo of Walle's write)", bj("CreatingSnapshot"), false],
    ["waiting for its worker", bj("BackingUp"), false],
    ["a spec change while waiting", bj("BackingUp", { generation: 2 }), true],
    ["Finished but not yet cleaned up", bj("Finished"), true],
    ["Finished and cleaned up", bj("Finished", { cleaned: true }), false],
  ])("%s → %s", (_what, obj, moves) => {
    expect(updateMovesBackupJob(obj)).toBe(moves);
  });
});

describe("the reads a BackupJob step asks for, round by round", () => {
  const bj = (status: BackupJobStatus, repoNs = "app"): BackupJob => ({
    apiVersion: "ros.io/v1",
    kind: "BackupJob",
    metadata: { name: job.name, namespace: job.namespace, uid: job.uid },
    spec: { sourcePvc: "data", repository: { name: "repo", namespace: repoNs } },
    status,
  });

  it("NotStarted: the PVC, the classes and the namespace's pods (for hooks, until they are planned), then the PVC's StorageClass", () => {
    expect(backupJobReads(bj({}), {}, config)).toEqual({
      pvc: { get: "PersistentVolumeClaim", name: "data", namespace: "app" },
      snapshotClasses: { list: "VolumeSnapshotClass", cached: true },
      pods: { list: "Pod", namespace: "app" },
    });
    expect(Object.keys(backupJobReads(bj({ hooks: { before: { command: "sync", from: "BackupJob", targets: [] } } }), {}, config))).toEqual([
      "pvc",
      "snapshotClasses",
    ]);
    expect(backupJobReads(bj({}), { pvc, snapshotClasses: [] }, config)).toEqual({ storageClass: { get: "StorageClass", name: "fast" } });
    expect(backupJobReads(bj({}), { pvc: null, snapshotClasses: [] }, config)).toEqual({});
  });

  it("CreatingSnapshot across namespaces: the snapshots, then the content the source is bound to", () => {
    const creating = bj({ phase: "CreatingSnapshot" }, "walle-system");
    expect(Object.keys(backupJobReads(creating, {}, config))).toEqual(["sourceSnapshot", "movedContent", "movedSnapshot"]);
    expect(backupJobReads(creating, { sourceSnapshot: readySnapshot("app", names.sourceSnapshot), movedContent: null, movedSnapshot: null }, config)).toEqual({
      sourceContent: { get: "VolumeSnapshotContent", name: "snapcontent-1" },
    });
  });

  it("WaitingBackup and BackingUp: the Job, then its pods only once it has ended", () => {
    const running = { metadata: { name: names.job }, status: { active: 1, ready: 1 } };
    expect(Object.keys(backupJobReads(bj({ phase: "WaitingBackup" }), {}, config))).toEqual(["workerJob"]);
    expect(backupJobReads(bj({ phase: "WaitingBackup" }), { workerJob: running }, config)).toEqual({});
    expect(backupJobReads(bj({ phase: "BackingUp" }), { workerJob: running }, config)).toEqual({});
    expect(Object.keys(backupJobReads(bj({ phase: "BackingUp" }), { workerJob: finishedJob("Complete") }, config))).toEqual(["workerPods"]);
  });

  it("moves to BackingUp once the Job counts a ready pod, without reading the pods", () => {
    const pending = decideBackupJob(
      world({ phase: "WaitingBackup" }, { workerJob: { metadata: { name: names.job }, status: { active: 1, ready: 0 } } }),
      config,
      now,
    );
    expect(pending.status.phase).toBe("WaitingBackup");
    const d = decideBackupJob(
      world({ phase: "WaitingBackup" }, { workerJob: { metadata: { name: names.job }, status: { active: 1, ready: 1 } } }),
      config,
      now,
    );
    expect(d.status.phase).toBe("BackingUp");
    expect(d.events).toEqual([{ type: "Normal", reason: "BackingUp", note: `Worker Job app/${names.job} is backing up PVC data.` }]);
  });

  it("makes the worker's PVC belong to the snapshot it is made from", () => {
    const ready = { ...readySnapshot("app", names.sourceSnapshot), metadata: { name: names.sourceSnapshot, namespace: "app", uid: "snap-uid-1" } };
    const d = decideBackupJob(world({ phase: "CreatingSnapshot", startTime: "2026-11-26T09:59:30Z" }, { pvc, sourceSnapshot: ready }), config, now);
    const claim = creates(d.actions).find((m) => m.kind === "PersistentVolumeClaim");
    expect(claim?.metadata.ownerReferences).toEqual([
      { apiVersion: "snapshot.storage.k8s.io/v1", kind: "VolumeSnapshot", name: names.sourceSnapshot, uid: "snap-uid-1" },
    ]);
  });

  it("a settled BackupJob reads nothing", () => {
    expect(backupJobReads(bj({ phase: "Finished" }), {}, config)).toEqual({});
  });
});

describe("ending a BackupJob", () => {
  it("writes the result first, saying clean-up has begun, then deletes, then records CleanedUp", () => {
    const result = encodeResult({
      command: "backup",
      outcome: "Succeeded",
      reason: "Completed",
      message: "Backed up.",
      snapshotId: "b".repeat(64),
      exitCode: 0,
      exitMeaning: "ok",
      startedAt: "2026-11-26T09:59:40Z",
      finishedAt: "2026-11-26T09:59:50Z",
    });
    const d = decideBackupJob(world({ phase: "BackingUp" }, { workerJob: finishedJob("Complete"), workerPods: [pod(result)] }), config, now);
    expect(d.actions).toEqual([]);
    expect(d.status.conditions?.find((c) => c.type === "CleanedUp")).toMatchObject({ status: "False", reason: "Deleting" });
    // The PVC goes with the snapshot it belongs to.
    expect(d.then?.actions.map((a) => (a.op === "delete" ? `${a.target.kind} ${a.target.name}` : a.op))).toEqual([
      `Job ${names.job}`,
      `VolumeSnapshot ${names.sourceSnapshot}`,
    ]);
    expect(d.then?.status.conditions?.find((c) => c.type === "CleanedUp")).toMatchObject({ status: "True", reason: "Deleted" });
    expect(d.then?.status.snapshotId).toBe("b".repeat(64));
    // Its own echo does not move it (the writer finishes), and once cleaned up nothing does.
    const echo = {
      apiVersion: "ros.io/v1",
      kind: "BackupJob",
      metadata: { name: job.name, namespace: job.namespace, generation: 1 },
      status: { ...d.status, observedGeneration: 1 },
    };
    expect(updateMovesBackupJob(echo)).toBe(false);
    // A writer that died in between leaves it unsettled: the resync's step deletes and records it.
    const resumed = decideBackupJob(world(d.status), config, now);
    expect(resumed.actions.length).toBe(3);
    expect(resumed.status.conditions?.find((c) => c.type === "CleanedUp")?.status).toBe("True");
  });

  it("a BackupJob whose worker Job the API server refused fails, naming the refusal, and its clean-up takes what it made", () => {
    const snapshotted = decideBackupJob(world({ phase: "CreatingSnapshot" }, { sourceSnapshot: readySnapshot("app", names.sourceSnapshot) }), config, now);
    expect(kindsCreated(snapshotted.actions)).toEqual([`PersistentVolumeClaim app/${names.pvc}`, "ServiceAccount app/walle-worker", `Job app/${names.job}`]);
    // The executor hands over the status it was about to write, and the API server's words.
    const refusal = `create Job app/${names.job}: jobs.batch "${names.job}" is forbidden: exceeded quota: no-jobs, requested: count/jobs.batch=1`;
    const d = backupJobReconciler.refused!(snapshotted.status, refusal, now)!;
    expect(d.actions).toEqual([]);
    expect({ phase: d.status.phase, finishTime: d.status.finishTime, state: d.status.conditions?.find((c) => c.type === "BackupState") }).toMatchObject({
      phase: "Failed",
      finishTime: "2026-11-26T10:00:00Z",
      state: { status: "False", reason: "Refused", message: `The API server refused what the BackupJob needs: ${refusal}` },
    });
    expect(d.status.conditions?.find((c) => c.type === "SnapshotReady")?.status).toBe("True");
    expect(d.events).toEqual([{ type: "Warning", reason: "BackupFailed", note: `The API server refused what the BackupJob needs: ${refusal}` }]);
    // Its clean-up refused in turn: it has ended, so it stays Failed for the quota, and the step fails to be tried again.
    expect(backupJobReconciler.refused!(d.status, refusal, now)).toBeUndefined();
    // The next step cleans up what was made before the refusal: the PVC from the snapshot, the snapshot.
    const cleaned = decideBackupJob(world(d.status), config, now);
    expect(cleaned.actions.map((a) => (a.op === "delete" ? `${a.target.kind} ${a.target.name}` : a.op))).toEqual([
      `Job ${names.job}`,
      `PersistentVolumeClaim ${names.pvc}`,
      `VolumeSnapshot ${names.sourceSnapshot}`,
    ]);
    expect(cleaned.status.conditions?.find((c) => c.type === "CleanedUp")?.status).toBe("True");
  });

  it("a BackupJob that fails before it made anything is cleaned up in the same write", () => {
    const d = decideBackupJob(world({}, { pvc: null, snapshotClasses: [] }), config, now);
    expect(d.then).toBeUndefined();
    expect(d.status.conditions?.find((c) => c.type === "CleanedUp")?.status).toBe("True");
  });
});

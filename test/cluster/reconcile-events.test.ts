// The reconcile function's other inputs, on the real cluster: Reference-mode ApiServerSource events, worker
// progress, and the BackupSet that aggregates a schedule's run.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BackupSetStatus } from "../../lib/api/backup-set.ts";
import { Informer } from "../../lib/k8s/informer.ts";
import { noise, startRestServer, tempDir, type RestServer } from "../integration/worker-harness.ts";
import { pvcWithData, repositorySecret, settled, type BackupJobObj } from "../support/backup-fixtures.ts";
import { admin, createNamespace, waitFor } from "../support/kube.ts";
import { caller, refEvent, podToken as workerPodToken } from "../support/triggers.ts";
import { startWalle } from "../support/walle.ts";

let rest: RestServer;
beforeAll(async () => {
  rest = await startRestServer({ dataDir: await tempDir("rest-events"), users: { e: "rest-secret" } });
});
afterAll(async () => rest?.stop());

function post(url: string, type: string, data: unknown, extra: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", "ce-specversion": "1.0", "ce-id": crypto.randomUUID(), "ce-source": "/test", "ce-type": type, ...extra },
    body: JSON.stringify(data),
  });
}

async function backupJob(ns: string, name: string, labels: Record<string, string> = {}): Promise<void> {
  await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, {
    apiVersion: "ros.io/v1",
    kind: "BackupJob",
    metadata: { name, labels },
    spec: { sourcePvc: "data", repository: { name: "repo", namespace: ns } },
  });
}

describe("reconcile's other inputs", () => {
  it("drives a BackupJob to Finished from Reference-mode events alone", async () => {
    const walle = await startWalle({ eventSource: false });
    const ns = await createNamespace("refmode");
    await pvcWithData(ns, "data", { "a.txt": "a" });
    await repositorySecret(ns, "repo", rest.repository("e", "rest-secret", `ref-${ns}`));
    await backupJob(ns, "by-ref");
    // As ApiServerSource in Reference mode would send them: {kind, namespace, name, apiVersion} and no object.
    const ref = { apiVersion: "ros.io/v1", kind: "BackupJob", namespace: ns, name: "by-ref" };
    // Every answer is 200 (handled) or 503 (a conflict, retried); any other ends the wait at once and fails below.
    const answers: number[] = [];
    const bj = await waitFor(
      async () => {
        const res = await refEvent(walle.url, ref);
        answers.push(res.status);
        if (res.status !== 200 && res.status !== 503) return { unexpected: res.status };
        const got = await admin().get<BackupJobObj>(`/apis/ros.io/v1/namespaces/${ns}/backupjobs/by-ref`);
        return got.status?.conditions?.some((c) => c.type === "CleanedUp") ? got : undefined;
      },
      "BackupJob driven by Reference-mode events",
      90_000,
    );
    expect(answers.filter((s) => s !== 200 && s !== 503)).toEqual([]);
    expect("status" in bj && bj.status?.phase).toBe("Finished");
    // A reference to something that no longer exists is deliberately ignored (2xx, so it is not retried).
    const gone = await refEvent(walle.url, { ...ref, name: "never-was" }, "dev.knative.apiserver.ref.delete");
    expect(gone.status).toBe(200);
  });

  it("shows a worker's progress on a running BackupJob, and ignores it once the job has ended", async () => {
    const walle = await startWalle({ eventSource: false });
    const ns = await createNamespace("progress");
    await backupJob(ns, "running");
    const path = `/apis/ros.io/v1/namespaces/${ns}/backupjobs/running`;
    await admin().patch(`${path}/status`, { status: { phase: "BackingUp" } });
    const progress = { percentDone: 0.425, filesDone: 17, totalFiles: 40, bytesDone: 4_250_000, totalBytes: 10_000_000, secondsRemaining: 12.4 };
    // As its worker sends it: with the token the kubelet projects into the worker's pod (bound to it, progress audience).
    const token = await workerPodToken(ns, "running-worker", { "ros.io/backup-job": "running", "ros.io/owner-namespace": ns });
    const auth = { authorization: `Bearer ${token}` };
    const res = await post(walle.url, "io.ros.walle.backup.progress", progress, { "ce-subject": path, ...auth });
    expect(res.status).toBe(200);
    const bj = await admin().get<BackupJobObj & { status?: { progress?: unknown } }>(path);
    expect(bj.status?.progress).toEqual({ percent: 42.5, filesDone: 17, totalFiles: 40, bytesDone: 4_250_000, totalBytes: 10_000_000, secondsRemaining: 12 });

    // Anyone but its worker is refused and changes nothing: no token; a real token for Walle's trigger audience; a
    // pod's own progress token when the pod is not this run's worker; the worker's token for another run.
    const forged = { ...progress, percentDone: 0.99 };
    const intruder = await workerPodToken(ns, "intruder", {});
    const otherRun = await workerPodToken(ns, "other-worker", { "ros.io/backup-job": "other", "ros.io/owner-namespace": ns });
    const otherAccount = await workerPodToken(ns, "default-worker", { "ros.io/backup-job": "running", "ros.io/owner-namespace": ns }, "default");
    const attempts = {
      "no token": await post(walle.url, "io.ros.walle.backup.progress", forged, { "ce-subject": path }),
      "a trigger token": await post(walle.url, "io.ros.walle.backup.progress", forged, {
        "ce-subject": path,
        authorization: `Bearer ${await caller(ns, "ci")}`,
      }),
      "a pod that is no worker": await post(walle.url, "io.ros.walle.backup.progress", forged, { "ce-subject": path, authorization: `Bearer ${intruder}` }),
      "another run's worker": await post(walle.url, "io.ros.walle.backup.progress", forged, { "ce-subject": path, authorization: `Bearer ${otherRun}` }),
      "a look-alike as another service account": await post(walle.url, "io.ros.walle.backup.progress", forged, {
        "ce-subject": path,
        authorization: `Bearer ${otherAccount}`,
      }),
    };
    expect(Object.fromEntries(Object.entries(attempts).map(([what, r]) => [what, r.status]))).toEqual({
      "no token": 401,
      "a trigger token": 401,
      "a pod that is no worker": 403,
      "another run's worker": 403,
      "a look-alike as another service account": 403,
    });
    expect(((await attempts["a pod that is no worker"].json()) as { error: string }).error).toMatch(/pod .*intruder is not the worker of BackupJob/);
    expect(((await attempts["a look-alike as another service account"].json()) as { error: string }).error).toMatch(
      /pod .*default-worker runs as service account default, not walle-worker/,
    );
    expect((await admin().get<BackupJobObj & { status?: { progress?: { percent: number } } }>(path)).status?.progress?.percent).toBe(42.5);

    await admin().patch(`${path}/status`, { status: { phase: "Finished", progress: null } });
    const late = await post(walle.url, "io.ros.walle.backup.progress", { ...progress, percentDone: 0.9 }, { "ce-subject": path, ...auth });
    expect(late.status).toBe(200);
    expect(((await late.json()) as { ignored?: string }).ignored).toBe("no BackupJob in progress");
    expect((await admin().get<{ status?: { progress?: unknown } }>(path)).status?.progress).toBeUndefined();

    const bad = await post(walle.url, "io.ros.walle.backup.progress", progress, { "ce-subject": "/not/a/backupjob", ...auth });
    expect(bad.status).toBe(400);
  });

  it("shows a real worker's progress, sent with the token its pod gets as the walle-worker service account", async () => {
    // A report a second (Walle's WALLE_PROGRESS_INTERVAL_SECONDS; a repository Secret cannot set a worker's settings).
    await startWalle({ env: { WALLE_PROGRESS_INTERVAL_SECONDS: "1" } });
    const ns = await createNamespace("live-progress");
    // New data, and enough of it that restic reports its status for several seconds while it works.
    await pvcWithData(ns, "data", Object.fromEntries(Array.from({ length: 24 }, (_, i) => [`f${i}.bin`, noise(8 * 1024 * 1024)])));
    await repositorySecret(ns, "repo", rest.repository("e", "rest-secret", `live-${ns}`));
    const shown: number[] = [];
    const watch = new Informer<BackupJobObj & { status?: { progress?: { percent?: number } } }>(
      admin(),
      `/apis/ros.io/v1/namespaces/${ns}/backupjobs`,
      (_, bj) => {
        const percent = bj.status?.progress?.percent;
        if (percent !== undefined) shown.push(percent);
      },
    );
    await watch.start();
    try {
      await backupJob(ns, "live");
      const bj = await settled(ns, "live");
      expect(bj.status?.phase).toBe("Finished");
      // The status showed the worker's reports while it ran, and they only went forward.
      expect(shown.length).toBeGreaterThan(0);
      expect(shown.every((p, i) => p >= 0 && p <= 100 && (i === 0 || p >= (shown[i - 1] ?? 0)))).toBe(true);
      expect((bj as { status?: { progress?: unknown } }).status?.progress).toBeUndefined();
    } finally {
      watch.stop();
    }
    // Walle made the account its worker ran as: labelled as Walle's, with no token of its own to mount.
    const account = await admin().get<{ metadata: { labels?: Record<string, string> }; automountServiceAccountToken?: boolean }>(
      `/api/v1/namespaces/${ns}/serviceaccounts/walle-worker`,
    );
    expect({ label: account.metadata.labels?.["app.kubernetes.io/created-by"], automount: account.automountServiceAccountToken }).toEqual({
      label: "walle",
      automount: false,
    });
  });

  it("shows a worker's progress on a running BackupRestore, and refuses a backup's subject for it", async () => {
    const walle = await startWalle({ eventSource: false });
    const ns = await createNamespace("restore-progress");
    const path = `/apis/ros.io/v1/namespaces/${ns}/backuprestores/running`;
    await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backuprestores`, {
      apiVersion: "ros.io/v1",
      kind: "BackupRestore",
      metadata: { name: "running" },
      spec: { repository: { name: "repo", namespace: ns }, source: { latest: { pvc: "data" } }, target: { newPvc: { name: "restored", size: "1Gi" } } },
    });
    await admin().patch(`${path}/status`, { status: { phase: "Restoring" } });
    // As the restore worker sends it (functions/worker/progress.ts): its subject names the BackupRestore.
    const progress = { percentDone: 0.5, filesDone: 3, totalFiles: 6, bytesDone: 512, totalBytes: 1024, secondsRemaining: 2 };
    const auth = {
      authorization: `Bearer ${await workerPodToken(ns, "restore-worker", { "ros.io/backup-restore": "running", "ros.io/owner-namespace": ns })}`,
    };
    const res = await post(walle.url, "io.ros.walle.restore.progress", progress, { "ce-subject": path, ...auth });
    expect(res.status).toBe(200);
    const br = await admin().get<{ status?: { progress?: unknown } }>(path);
    expect(br.status?.progress).toEqual({ percent: 50, filesDone: 3, totalFiles: 6, bytesDone: 512, totalBytes: 1024, secondsRemaining: 2 });
    // A restore's progress that names a BackupJob is refused, and changes nothing.
    const crossed = await post(walle.url, "io.ros.walle.restore.progress", progress, {
      "ce-subject": `/apis/ros.io/v1/namespaces/${ns}/backupjobs/running`,
      ...auth,
    });
    expect(crossed.status).toBe(400);
    expect(((await crossed.json()) as { issues?: { path: string }[] }).issues?.[0]?.path).toBe("subject");
  });

  it("aggregates a BackupSet from its BackupJobs, as the original did", async () => {
    await startWalle();
    const ns = await createNamespace("set");
    const set = `run-${ns}`;
    await admin().create("/apis/ros.io/v1/backupsets", {
      apiVersion: "ros.io/v1",
      kind: "BackupSet",
      metadata: { name: set },
      spec: { selector: { matchLabels: { "ros.io/backupset": set } } },
    });
    await pvcWithData(ns, "data", { "a.txt": "a" });
    await repositorySecret(ns, "repo", rest.repository("e", "rest-secret", `set-${ns}`));
    await backupJob(ns, "good", { "ros.io/backupset": set });
    await admin().create(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`, {
      apiVersion: "ros.io/v1",
      kind: "BackupJob",
      metadata: { name: "bad", labels: { "ros.io/backupset": set } },
      spec: { sourcePvc: "absent", repository: { name: "repo", namespace: ns } },
    });
    await settled(ns, "good");
    await settled(ns, "bad");
    const status = await waitFor(async () => {
      const s = await admin().get<{ status?: BackupSetStatus }>(`/apis/ros.io/v1/backupsets/${set}`);
      return s.status?.state && s.status.state !== "Running" ? s.status : undefined;
    }, "BackupSet settled");
    expect(status).toMatchObject({
      state: "FinishedWithFailures",
      completions: "1/2",
      statistics: { totalJobs: 2, runningJobs: 0, finishedJobs: 1, failedJobs: 1, unstartedJobs: 0 },
    });
    expect(status.finishTime).toBeTruthy();
    await admin().delete(`/apis/ros.io/v1/backupsets/${set}`);
  });
});

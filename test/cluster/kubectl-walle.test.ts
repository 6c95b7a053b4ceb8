// kubectl walle run as a user would run it: the executable kubectl-walle found on the PATH (Debian's Node 20
// first there, so the launcher hands over to the pinned Node 24), as user ada with only the RBAC that
// examples/kubectl-walle-rbac.yaml gives, against the local cluster's real API server and Walle's reconcile.
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { applyObjects, readManifestFiles } from "../../cluster/index.ts";
import { repoRoot } from "../../cluster/toolchain.ts";
import { startRestServer, tempDir, type RestServer } from "../integration/worker-harness.ts";
import { PASSWORD, pvcWithData, repositorySecret, volumeDir } from "../support/backup-fixtures.ts";
import { admin, createNamespace, kubeconfigFileForUser, waitFor } from "../support/kube.ts";
import { runTick } from "../support/tick.ts";
import { startWalle } from "../support/walle.ts";

const USER = "cli";
let rest: RestServer;
let bin: string;
let kubeconfig: string;

beforeAll(async () => {
  rest = await startRestServer({ dataDir: await tempDir("rest-cli"), users: { [USER]: "rest-secret" } });
  // What `npm install -g` puts on the PATH: kubectl-walle, a link to the launcher.
  bin = path.join(await tempDir("cli-bin"), "bin");
  await mkdir(bin);
  await symlink(path.join(repoRoot, "cli", "kubectl-walle.cjs"), path.join(bin, "kubectl-walle"));
  await applyObjects(admin(), await readManifestFiles([path.join(repoRoot, "examples", "kubectl-walle-rbac.yaml")]));
  kubeconfig = await kubeconfigFileForUser("ada");
  // The cluster-wide roles the README tells an admin to bind: status, and running schedules.
  for (const role of ["walle-cli-status", "walle-cli-schedules"]) {
    await admin()
      .create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: `ada-${role}` },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
        subjects: [{ kind: "User", apiGroup: "rbac.authorization.k8s.io", name: "ada" }],
      })
      .catch(() => {});
  }
});
afterAll(async () => {
  await rest?.stop();
  for (const role of ["walle-cli-status", "walle-cli-schedules"])
    await admin()
      .delete(`/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/ada-${role}`)
      .catch(() => {});
});

/** A BackupSchedule of the PVCs of namespace `ns` (none, with `selects: false`) into its Secret `repo`, deleted after the test. */
async function scheduleOf(ns: string, opts: { selects?: boolean } = {}): Promise<string> {
  const name = `cli-${ns}`;
  const namespaceSelector = { matchLabels: opts.selects === false ? { "walle.test/none": "none" } : { "kubernetes.io/metadata.name": ns } };
  await admin().create("/apis/ros.io/v1/backupschedules", {
    apiVersion: "ros.io/v1",
    kind: "BackupSchedule",
    metadata: { name },
    spec: { interval: "24h", repository: { name: "repo", namespace: ns }, plans: [{ type: "persistentVolumeClaim", namespaceSelector }] },
  });
  onTestFinished(() =>
    admin()
      .delete(`/apis/ros.io/v1/backupschedules/${name}`)
      .then(
        () => undefined,
        () => undefined,
      ),
  );
  return name;
}

interface ScheduleSeen {
  metadata: { annotations?: Record<string, string> };
  status?: { lastBackupRequest?: { id: string; backupSet?: string; message: string } };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

const env = () => ({ PATH: `${bin}:/usr/bin:/bin`, HOME: path.dirname(bin), KUBECONFIG: kubeconfig });

/** `kubectl-walle <args>` as ada, from the PATH. */
function walle(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile("kubectl-walle", args, { env: env(), maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** A namespace where ada may use the plugin (a RoleBinding to walle-cli), with PVC `data` and Secret `repo`. */
async function tenant(prefix: string, files: Record<string, string | Uint8Array>): Promise<string> {
  const ns = await createNamespace(prefix);
  await admin().create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: "ada-walle" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "walle-cli" },
    subjects: [{ kind: "User", apiGroup: "rbac.authorization.k8s.io", name: "ada" }],
  });
  await pvcWithData(ns, "data", files);
  await repositorySecret(ns, "repo", rest.repository(USER, "rest-secret", `${prefix}-${ns}`));
  return ns;
}

async function filesOf(ns: string, pvc: string, names: readonly string[]): Promise<Record<string, string>> {
  const dir = await volumeDir(ns, pvc);
  const out: Record<string, string> = {};
  for (const n of names) out[n] = (await readFile(path.join(dir, n))).toString("base64");
  return out;
}

describe("kubectl walle", () => {
  it("backs up with --wait, lists the snapshots newest first, restores into a new PVC byte for byte, and refuses an in-place restore while a pod mounts the PVC", async () => {
    await startWalle();
    const files = { "orders.csv": "id,total\n1,9.99\n", "db/rows.bin": randomBytes(2 * 1024 * 1024), "db/empty": "" };
    const ns = await tenant("cli", files);

    const backup = await walle(["backup", "data", "-n", ns, "--repository", "repo", "--wait"]);
    expect(backup, backup.stderr).toMatchObject({ code: 0 });
    expect(backup.stdout).toMatch(
      new RegExp(`^backupjob\\.ros\\.io/data-forced-[0-9a-f]{10} created\\nbackupjob\\.ros\\.io/data-forced-[0-9a-f]{10} Finished: snapshot [0-9a-f]{8}\\n$`),
    );
    // Without a terminal, each phase once, on stderr.
    expect(backup.stderr).toMatch(/ Finished\n$/);

    // A second backup; the list reads the repository in the cluster and shows the newest first.
    const second = await walle(["backup", "data", "-n", ns, "--repository", "repo", "--wait"]);
    expect(second, second.stderr).toMatchObject({ code: 0 });
    const newest = /snapshot ([0-9a-f]{8})\n$/.exec(second.stdout)?.[1];
    const first = /snapshot ([0-9a-f]{8})\n$/.exec(backup.stdout)?.[1];
    const listed = await walle(["snapshots", "data", "-n", ns, "--repository", "repo"]);
    expect(listed, listed.stderr).toMatchObject({ code: 0, stderr: "" });
    const rows = listed.stdout.trimEnd().split("\n");
    expect(rows[0]).toMatch(/^ID +TIME +AGE +HOST +SIZE$/);
    expect(rows.slice(1).map((r) => r.split(/ +/)[0])).toEqual([newest, first]);
    expect(rows[1]).toMatch(/^[0-9a-f]{8} +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ +\d+s +walle-local +2\.0 MiB$/);
    // Its worker Job is gone again, and the password never came back: only the list did.
    expect(
      (await admin().get<{ items: unknown[] }>(`/apis/batch/v1/namespaces/${ns}/jobs`, { labelSelector: "ros.io/backup-job-type=snapshots" })).items,
    ).toEqual([]);
    expect(listed.stdout).not.toContain(PASSWORD);

    const restore = await walle(["restore", "data", "-n", ns, "--to", "data-copy", "--repository", "repo", "--wait"]);
    expect(restore, restore.stderr).toMatchObject({ code: 0 });
    expect(restore.stdout).toMatch(/^backuprestore\.ros\.io\/restore-[0-9a-f]{10} created\n/);
    expect(await filesOf(ns, "data-copy", Object.keys(files))).toEqual(await filesOf(ns, "data", Object.keys(files)));

    await admin().create(`/api/v1/namespaces/${ns}/pods`, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "app-0" },
      spec: {
        containers: [{ name: "app", image: "busybox:1.36", command: ["sleep", "infinity"], volumeMounts: [{ name: "data", mountPath: "/data" }] }],
        volumes: [{ name: "data", persistentVolumeClaim: { claimName: "data" } }],
      },
    });
    const restores = async () => (await admin().get<{ items: unknown[] }>(`/apis/ros.io/v1/namespaces/${ns}/backuprestores`)).items.length;
    const before = await restores();
    const inPlace = await walle(["restore", "data", "-n", ns, "--in-place", "--repository", "repo"]);
    expect(inPlace.code).toBe(1);
    expect(inPlace.stderr).toBe(
      `error: PVC ${ns}/data is mounted by pod app-0: restoring under a running application can corrupt its data. Scale it down first, restore into a new PVC with --to, or pass --force.\n`,
    );
    expect(await restores()).toBe(before);
  }, 300_000);

  it("a failing backup exits 1 with the failure's message; status shows the schedule's next run and the failure", async () => {
    await startWalle();
    const ns = await tenant("cli-fail", { "a.txt": "a" });
    // The repository exists, and this Secret opens it with the wrong password.
    expect((await walle(["backup", "data", "-n", ns, "--repository", "repo", "--wait"])).code).toBe(0);
    await admin().create(`/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "wrong" },
      stringData: { RESTIC_REPOSITORY: rest.repository(USER, "rest-secret", `cli-fail-${ns}`), RESTIC_PASSWORD: `not ${PASSWORD}` },
    });
    const failed = await walle(["backup", "data", "-n", ns, "--repository", "wrong", "--wait"]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^error: backupjob\.ros\.io\/data-forced-[0-9a-f]{10} Failed \(WrongPassword\): The repository password is wrong/m);

    const schedule = await scheduleOf(ns, { selects: false });
    {
      const tick = await runTick({ schedule });
      expect(tick.code, tick.stderr).toBe(0);
      const status = await walle(["status", "-n", ns]);
      expect(status, status.stderr).toMatchObject({ code: 0 });
      const lines = status.stdout.split("\n");
      expect(lines).toContainEqual(expect.stringMatching(/^NAME +STATE +EVERY +LAST BACKUP +NEXT BACKUP +PROBLEM$/));
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^backupschedule\\.ros\\.io/${schedule} +\\S+ +24h +\\S+( ago)? +in 2[34]h(\\d+m)? `)));
      expect(lines).toContainEqual(
        expect.stringMatching(/^backupjob\.ros\.io\/data-forced-[0-9a-f]{10} +data +WrongPassword +\S+ ago +The repository password is wrong/),
      );
      const yaml = await walle(["status", "-n", ns, "-o", "yaml"]);
      expect(yaml.stdout).toMatch(/^apiVersion: v1\nkind: List\nitems:\n/);
    }
    // Run now, a schedule whose plans select nothing: Walle says so, and nothing is made.
    const sets = async () =>
      (await admin().get<{ items: unknown[] }>("/apis/ros.io/v1/backupsets", { labelSelector: `ros.io/backup-schedule=${schedule}` })).items.length;
    const nothing = await walle(["backup", "--schedule", schedule]);
    expect(nothing).toMatchObject({
      code: 1,
      stdout: "",
      stderr: `error: backupschedule.ros.io/${schedule} started no backup: No PVC matched the plans; no BackupSet was made.\n`,
    });
    expect(await sets()).toBe(0);
  }, 300_000);

  it("backup --schedule runs a schedule now: the reconcile function starts its BackupSet at once, and --wait follows it to Finished", async () => {
    await startWalle();
    const ns = await tenant("cli-sched", { "index.html": "<h1>shop</h1>\n", "db/orders": randomBytes(256 * 1024) });
    const schedule = await scheduleOf(ns);
    const run = await walle(["backup", "--schedule", schedule, "--wait"]);
    expect(run, run.stderr).toMatchObject({ code: 0 });
    const set = new RegExp(`backupset\\.ros\\.io/(${schedule}-run-[0-9a-f]{10})`).exec(run.stdout)?.[1];
    expect(run.stdout).toBe(`backupset.ros.io/${set} created: Started BackupSet ${set} with 1 BackupJobs.\nbackupset.ros.io/${set} Finished 1/1\n`);
    expect(run.stderr.split("\n")).toContain(`backupset.ros.io/${set} Running 0/1`);
    // The schedule answered the plugin's request, which the annotation holds; its clock's grid did not move.
    const seen = await admin().get<ScheduleSeen & { status?: { scheduler?: unknown } }>(`/apis/ros.io/v1/backupschedules/${schedule}`);
    expect(seen.status?.lastBackupRequest).toEqual({
      id: seen.metadata.annotations?.["ros.io/backup-requested"],
      time: expect.any(String),
      backupSet: set,
      message: `Started BackupSet ${set} with 1 BackupJobs.`,
    });
    expect(seen.status?.scheduler).toBeUndefined();
    // Its state follows the run at once, not at the next tick (no tick runs here): Running, then Finished.
    const after = await waitFor(
      async () => {
        const s = await admin().get<ScheduleSeen & { status?: { state?: string; conditions?: { type: string; status: string }[] } }>(
          `/apis/ros.io/v1/backupschedules/${schedule}`,
        );
        return s.status?.state !== "Running" && s;
      },
      "the schedule's state to move on from Running",
      30_000,
    );
    expect({ state: after.status?.state, ready: after.status?.conditions?.find((c) => c.type === "BackupReady")?.status }).toEqual({
      state: "Finished",
      ready: "True",
    });
    const jobs = await admin().get<{ items: { metadata: { name: string }; status?: { phase?: string; snapshotId?: string } }[] }>(
      `/apis/ros.io/v1/namespaces/${ns}/backupjobs`,
    );
    expect(jobs.items.map((j) => [j.metadata.name, j.status?.phase, /^[0-9a-f]{64}$/.test(j.status?.snapshotId ?? "")])).toEqual([
      [`${set}-data`, "Finished", true],
    ]);
    // The run's snapshot is the one the repository lists for the PVC.
    const listed = await walle(["snapshots", "data", "-n", ns, "--repository", "repo", "-o", "json"]);
    expect(listed, listed.stderr).toMatchObject({ code: 0 });
    expect((JSON.parse(listed.stdout) as { snapshots: { id: string }[] }).snapshots.map((x) => x.id)).toEqual([jobs.items[0]?.status?.snapshotId?.slice(0, 8)]);
  }, 300_000);

  it("backup --schedule with no reconcile function to answer times out with exit 3; the request stands, and the next tick answers it", async () => {
    const ns = await tenant("cli-late", { "a.txt": "a" });
    const schedule = await scheduleOf(ns, { selects: false });
    const late = await walle(["backup", "--schedule", schedule, "--timeout", "5s"]);
    expect(late.code).toBe(3);
    expect(late.stderr).toMatch(
      new RegExp(
        `^error: backupschedule\\.ros\\.io/${schedule}: Walle did not take up the run \\(ros\\.io/backup-requested=\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\) within 5 s\\. .*The request stands: the next tick starts it\\.\\n$`,
      ),
    );
    const path = `/apis/ros.io/v1/backupschedules/${schedule}`;
    const asked = (await admin().get<ScheduleSeen>(path)).metadata.annotations?.["ros.io/backup-requested"];
    expect((await admin().get<ScheduleSeen>(path)).status?.lastBackupRequest).toBeUndefined();
    const tick = await runTick({ schedule });
    expect(tick.code, tick.stderr).toBe(0);
    expect((await admin().get<ScheduleSeen>(path)).status?.lastBackupRequest).toEqual({
      id: asked,
      time: expect.any(String),
      message: "No PVC matched the plans; no BackupSet was made.",
    });
  }, 120_000);

  it("draws a progress bar that advances, in a terminal", async () => {
    await startWalle({ env: { WALLE_PROGRESS_INTERVAL_SECONDS: "1" } });
    // Data restic reads for several seconds: 768 MiB that neither compresses nor deduplicates.
    const ns = await tenant("cli-tty", { README: "twelve parts\n" });
    const dir = await volumeDir(ns, "data");
    for (let i = 0; i < 12; i++) await writeFile(path.join(dir, `part-${i}.bin`), randomBytes(64 * 1024 * 1024));
    // util-linux's script gives the plugin a pseudo-terminal and records what it draws on it.
    const typescript = path.join(path.dirname(bin), "typescript");
    const command = `kubectl-walle backup data -n ${ns} --repository repo --wait`;
    const code = await new Promise<number | null>((resolve) => {
      const p = spawn("script", ["-q", "-e", "-c", command, typescript], { env: { ...env(), TERM: "xterm" }, stdio: "ignore" });
      p.once("exit", resolve);
    });
    const screen = await readFile(typescript, "utf8");
    expect(code, screen).toBe(0);
    // Each redraw returns to the line's start and clears it; the frames that show the bar, in order.
    const ESC = String.fromCharCode(27);
    const frames = screen.split(`\r${ESC}[2K`).map((f) => f.replaceAll(new RegExp(`${ESC}\\[[0-9;]*m`, "g"), ""));
    const percents = frames.flatMap((f) => /^BackingUp +\[[#.]{30}\] +(\d+)%/.exec(f)?.[1] ?? []).map(Number);
    expect(percents.length, frames.join("\n")).toBeGreaterThanOrEqual(2);
    expect(percents).toEqual([...percents].sort((a, b) => a - b));
    expect(new Set(percents).size).toBeGreaterThanOrEqual(2);
    expect(frames.some((f) => /^BackingUp +\[[#.]{30}\] +\d+% +[\d.]+ (MiB|GiB) \/ 768\.0 MiB/.test(f))).toBe(true);
    expect(screen).toMatch(/Finished: snapshot [0-9a-f]{8}/);
    await waitFor(
      async () =>
        (await admin().get<{ items: { status?: { phase?: string } }[] }>(`/apis/ros.io/v1/namespaces/${ns}/backupjobs`)).items.every(
          (j) => j.status?.phase === "Finished",
        ),
      "the BackupJob Finished",
    );
  }, 300_000);
});

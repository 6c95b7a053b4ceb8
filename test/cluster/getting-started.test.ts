// The original Walle README's getting-started, step by step and as written, on a local cluster of its own (the
// chart's cluster-scoped objects would clash with the kustomization's in the shared test cluster), with every part
// real that runs here: the CRDs from `crdgen | kubectl apply`, Walle from `helm upgrade --install` with the
// original's values file, the Secret `restic-repo` for a real rest-server with htpasswd, the example workload in two
// namespaces, the `example-schedule` BackupSchedule as the original gives it, the tick fired by KEDA's operator from
// the installed ScaledJob, and the reconcile function run as the installed Knative Service would run it (its
// environment and configuration file), fed by Knative's ApiServerSource adapter configured from the installed
// ApiServerSource. Then the original's manual restore recipe gives way to a BackupRestore, and a backup and a restore
// are forced with curl exactly as the README documents them.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, STATE_ROOT, type Cluster } from "../../cluster/index.ts";
import { localizeScaledJob } from "../../cluster/keda.ts";
import { startRestServer, type RestServer } from "../../cluster/rest-server.ts";
import { installedFunction, runWalle, type RunningWalle } from "../../cluster/run-walle.ts";
import { repoRoot, resolveBinary, resolveResticBinaries } from "../../cluster/toolchain.ts";
import { Label } from "../../lib/api/constants.ts";
import type { KubeObject } from "../../lib/k8s/informer.ts";
import { createLogger } from "../../lib/log.ts";
import { csiStorage, expectNoLeftovers, settled, settledRestore, volumeDir, type BackupJobObj, type On, type Storage } from "../support/backup-fixtures.ts";
import { waitFor } from "../support/kube.ts";
import { shell } from "../support/shell.ts";

const run = promisify(execFile);
/** Where the chart installs Walle, as the original's `helm upgrade -n walle`. */
const NS = "walle";
/** The original's values file names the cluster `minikube`: restic's --host for every snapshot. */
const HOST = "minikube";
/** The original's values name the Rust Walle's worker image, which is not Walle's worker (and which Walle's admission bounds refuse). */
const WORKER_IMAGE = "ghcr.io/ros-io/walle-worker:latest";

let stateDir: string;
let cluster: Cluster | undefined;
let rest: RestServer | undefined;
let walle: RunningWalle | undefined;
let on: On;
let restic: string;
let repository: Record<string, string>;
let before: Storage;

/** A shell command as the user types it, with this cluster's kubeconfig; its stdout. */
async function sh(script: string): Promise<string> {
  return shell(script, { KUBECONFIG: cluster?.kubeconfig ?? "", HELM: await resolveBinary("helm") });
}

interface ResticSnapshot {
  id: string;
  time: string;
  hostname: string;
  tags?: string[];
  paths: string[];
}

/** restic as the repository's owner runs it, with the Secret's variables. */
async function resticOut(args: string[]): Promise<string> {
  const env = { PATH: process.env.PATH ?? "", HOME: stateDir, RESTIC_CACHE_DIR: path.join(stateDir, "restic-cache"), ...repository };
  return (await run(restic, args, { env })).stdout;
}

const snapshots = async (): Promise<ResticSnapshot[]> => JSON.parse(await resticOut(["snapshots", "--json", "--no-lock"])) as ResticSnapshot[];
const dump = (id: string, file: string): Promise<string> => resticOut(["dump", "--no-lock", id, file]);
const resticCheck = (): Promise<string> => resticOut(["check"]);

/** The example's datelog in `ns`, once its container has written a line. */
async function datelog(ns: string): Promise<{ file: string; text: string; uid: number; mode: number }> {
  const file = path.join(await volumeDir(ns, "example-volume", on), "datelog");
  const text = await waitFor(
    async () => {
      const t = await readFile(file, "utf8").catch(() => "");
      return t.length > 0 && t;
    },
    `the example workload in ${ns} to write its datelog`,
    90_000,
  );
  const st = await stat(file);
  return { file, text, uid: st.uid, mode: st.mode & 0o7777 };
}

/**
 * The README's curl commands ("Force a backup or a restore with curl"), as written but for where the function is
 * (here, where it listens; in a cluster, its cluster-local address) and the install namespace (the chart's `walle`,
 * the kustomization's `walle-system`): the token's command, the forced backup and the forced restore.
 */
function readmeCurl(url: string): { token: string; backup: string; restore: string } {
  const readme = readFileSync(path.join(repoRoot, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Force a backup or a restore with curl"));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? "";
  const commands = block
    .split("\n")
    .filter((line) => !line.startsWith("#"))
    .join("\n")
    .split(/\n{2,}/)
    .map((c) => c.trim().replaceAll("http://walle-reconcile.walle-system.svc.cluster.local/", url).replaceAll("walle-system", NS))
    .filter(Boolean);
  const find = (what: string, test: (c: string) => boolean) => {
    const found = commands.find(test);
    if (!found) throw new Error(`the README's curl section has no ${what}:\n${block}`);
    return found;
  };
  return {
    token: find("TOKEN= command", (c) => c.startsWith("TOKEN=")),
    backup: find("forced backup", (c) => c.includes("ce-type: io.ros.walle.backup.requested")),
    restore: find("forced restore", (c) => c.includes("ce-type: io.ros.walle.restore.requested")),
  };
}

/** curl -i's answer: its status line and its JSON body. */
function answer(out: string): { status: string; body: Record<string, { namespace: string; name: string }> } {
  const [head = "", body = ""] = out.split("\r\n\r\n");
  return { status: head.split("\r\n")[0] ?? "", body: JSON.parse(body) as Record<string, { namespace: string; name: string }> };
}

beforeAll(async () => {
  stateDir = await mkdtemp(path.join(STATE_ROOT, "walle-getting-started-"));
  // Walle's CRDs are not installed with the cluster: step 1 installs them.
  cluster = await startCluster({ stateDir, walleCrds: false });
  on = { api: cluster.api, stateDir };
  const bins = await resolveResticBinaries();
  restic = bins.restic;
  const password = randomBytes(12).toString("hex");
  rest = await startRestServer({
    binary: bins.restServer,
    dataDir: path.join(stateDir, "repository"),
    users: { walle: password },
    host: cluster.node.network.hostIp,
  });
  repository = {
    RESTIC_REPOSITORY: `rest:http://${cluster.node.network.hostIp}:${rest.port}/walle/example`,
    RESTIC_PASSWORD: randomBytes(12).toString("hex"),
    RESTIC_REST_USERNAME: "walle",
    RESTIC_REST_PASSWORD: password,
  };
}, 900_000);

afterAll(async () => {
  await walle?.stop();
  await rest?.stop();
  await cluster?.stop();
  if (stateDir && !process.env.WALLE_KEEP_TEST_CLUSTER) await rm(stateDir, { recursive: true, force: true });
}, 120_000);

describe("the original README's getting-started, as written", () => {
  it("step 1: the CRDs from crdgen | kubectl apply, then Walle by helm upgrade --install with the original's values", async () => {
    const crds = await sh("npm run --silent crdgen -- --stdout | kubectl apply -f -");
    expect(crds.trim().split("\n").sort()).toEqual(
      ["backupjobs", "backuprestores", "backupschedules", "backupsets"].map((p) => `customresourcedefinition.apiextensions.k8s.io/${p}.ros.io created`),
    );
    await sh(
      "kubectl wait --for condition=established --timeout=60s crd/backupschedules.ros.io crd/backupsets.ros.io crd/backupjobs.ros.io crd/backuprestores.ros.io",
    );
    const helm = await sh(
      `"$HELM" upgrade -n ${NS} --create-namespace --install walle ./helm/charts/walle -f examples/values.yml --set config.backup_job_image=${WORKER_IMAGE}`,
    );
    expect(helm).toMatch(/^STATUS: deployed$/m);
    expect(helm).toMatch(/^NAMESPACE: walle$/m);
    await sh(`kubectl label namespace ${NS} pod-security.kubernetes.io/enforce=baseline pod-security.kubernetes.io/enforce-version=latest`);

    // What the chart made of the original's values: the images of image.tag, and the operator's file.
    const service = await cluster!.api.get<{ spec: { template: { spec: { containers: { image: string }[] } } } }>(
      `/apis/serving.knative.dev/v1/namespaces/${NS}/services/walle-reconcile`,
    );
    expect(service.spec.template.spec.containers.map((c) => c.image)).toEqual(["ghcr.io/ros-io/walle-reconcile:latest"]);
    const config = await cluster!.api.get<{ data: Record<string, string> }>(`/api/v1/namespaces/${NS}/configmaps/walle-config`);
    expect(config.data["config.yml"]).toContain(`cluster_name: ${HOST}`);
    expect(config.data["config.yml"]).toContain("storage_class: csi-hostpath-sc");

    // Knative would run the installed Service; here it runs on this machine as that Service's pod would.
    const installed = await installedFunction(cluster!.api, stateDir, NS);
    expect(installed.env).toMatchObject({ WALLE_WORKER_IMAGE: WORKER_IMAGE, WALLE_CLUSTER_NAME: HOST, WALLE_INSTALL_NAMESPACE: NS });
    const level = process.env.WALLE_TEST_LOG_LEVEL === "info" ? "info" : "silent";
    walle = await runWalle({
      admin: cluster!.api,
      stateDir,
      log: createLogger({ function: "walle-reconcile", level }),
      env: installed.env,
      installNamespace: NS,
      eventSourceManifest: installed.eventSourceManifest,
    });
    // KEDA fires the installed ScaledJob's tick; its window comes every other minute instead of every fifth, and its
    // workers report to where the function listens here.
    const scaledJob = await cluster!.api.get<KubeObject>(`/apis/keda.sh/v1alpha1/namespaces/${NS}/scaledjobs/walle-tick`);
    await cluster!.api.replace(
      `/apis/keda.sh/v1alpha1/namespaces/${NS}/scaledjobs/walle-tick`,
      localizeScaledJob(scaledJob, { progressSinkUrl: walle.url, shortWindow: true }),
    );
    before = await csiStorage(on);
  });

  it("steps 2 and 3: the Secret and the example-schedule back up the workloads of two namespaces into one repository", async () => {
    // Step 2, the original's Secret, with the repository's URL.
    await sh(
      `kubectl -n ${NS} create secret generic restic-repo --from-literal=INITIALIZE_REPO=true ` +
        Object.entries(repository)
          .map(([k, v]) => `--from-literal=${k}=${v}`)
          .join(" "),
    );
    await sh("kubectl apply -f examples/workload.yml && kubectl create namespace shop && kubectl -n shop apply -f examples/workload.yml");
    const written = { default: await datelog("default"), shop: await datelog("shop") };
    // Step 3.
    const applied = Date.now();
    await sh("kubectl apply -f examples/getting-started-schedule.yml");

    type SetObj = { metadata: { name: string }; status?: { state?: string; completions?: string; statistics?: Record<string, number> } };
    const set = await waitFor(
      async () => {
        const sets = await cluster!.api.get<{ items: SetObj[] }>("/apis/ros.io/v1/backupsets", { labelSelector: `${Label.BackupSchedule}=example-schedule` });
        const s = sets.items[0];
        return s && ["Finished", "FinishedWithFailures"].includes(s.status?.state ?? "") && s;
      },
      "example-schedule's first BackupSet to end (KEDA's window comes every other minute)",
      420_000,
    );
    expect(set.status).toMatchObject({ state: "Finished", completions: "2/2", statistics: { totalJobs: 2, finishedJobs: 2, failedJobs: 0 } });

    const jobs = (await cluster!.api.get<{ items: BackupJobObj[] }>("/apis/ros.io/v1/backupjobs", { labelSelector: `${Label.BackupSet}=${set.metadata.name}` }))
      .items;
    const done = await Promise.all(jobs.map((j) => settled(j.metadata.namespace, j.metadata.name, 90_000, on)));
    expect(done.map((j) => [j.metadata.namespace, j.status?.phase]).sort()).toEqual([
      ["default", "Finished"],
      ["shop", "Finished"],
    ]);

    // One repository holds both, each snapshot carrying the cluster's name, its PVC, namespace and schedule, and the
    // time its volume snapshot was cut.
    const found = await snapshots();
    expect(found.map((s) => s.id).sort()).toEqual(done.map((j) => j.status?.snapshotId).sort());
    for (const job of done) {
      const snap = found.find((s) => s.id === job.status?.snapshotId);
      expect(snap).toMatchObject({ hostname: HOST, paths: ["/data"] });
      expect(snap?.tags?.sort()).toEqual([`namespace=${job.metadata.namespace}`, "pvc=example-volume", "schedule=example-schedule"]);
      const cut = Date.parse(snap?.time ?? "");
      const ready = Date.parse(job.status?.conditions?.find((c) => c.type === "SnapshotReady")?.lastTransitionTime ?? "");
      expect(cut).toBeGreaterThanOrEqual(applied - 1000);
      expect(cut).toBeLessThanOrEqual(ready + 1000);
      // What was backed up is what the container had written by then: a prefix of its datelog now, at least the line
      // seen before the schedule was applied.
      const ns = job.metadata.namespace as keyof typeof written;
      const backedUp = await dump(snap?.id ?? "", "/datelog");
      expect(backedUp.startsWith(written[ns].text)).toBe(true);
      expect((await readFile(written[ns].file, "utf8")).startsWith(backedUp)).toBe(true);
    }
    expect(await resticCheck()).toMatch(/no errors were found/);
    await expectNoLeftovers(["default", "shop", NS], before, on);
  });

  it("forced by curl as the README documents it: one PVC backed up now, then restored into a new PVC", async () => {
    // The README's caller, service account ci/backup-bot: it may force backups and restores in default (walle-edit,
    // which Kubernetes' edit role carries too), and use the shared repository restic-repo.
    await sh(
      [
        "kubectl create namespace ci",
        "kubectl -n ci create serviceaccount backup-bot",
        "kubectl -n default create rolebinding backup-bot-walle-edit --clusterrole=walle-edit --serviceaccount=ci:backup-bot",
        // As the README grants a team its shared repository: a Role from a manifest.
        `kubectl apply -f - <<'ROLE'\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: walle-repo-restic-repo, namespace: ${NS}}\nrules:\n  - {apiGroups: [ros.io], resources: [repositories], resourceNames: [restic-repo], verbs: [backup, restore]}\nROLE\n`,
        `kubectl -n ${NS} create rolebinding walle-repo-restic-repo --role=walle-repo-restic-repo --serviceaccount=ci:backup-bot`,
      ].join("\n"),
    );
    const curl = readmeCurl(walle?.url ?? "");
    const forced = answer(await sh(`${curl.token}\n${curl.backup}`));
    expect(forced.status).toBe("HTTP/1.1 202 Accepted");
    const job = await settled(forced.body.backupJob?.namespace ?? "", forced.body.backupJob?.name ?? "", 120_000, on);
    expect(job.status?.phase).toBe("Finished");
    const snap = (await snapshots()).find((s) => s.id === job.status?.snapshotId);
    expect(snap).toMatchObject({ hostname: HOST, paths: ["/data"] });
    expect(snap?.tags?.sort()).toEqual(["namespace=default", "pvc=example-volume"]);

    const requested = answer(await sh(`${curl.token}\n${curl.restore}`));
    expect(requested.status).toBe("HTTP/1.1 202 Accepted");
    const restore = await settledRestore(requested.body.backupRestore?.namespace ?? "", requested.body.backupRestore?.name ?? "", 120_000, on);
    expect(restore.status).toMatchObject({ phase: "Finished", snapshotId: job.status?.snapshotId });
    // The data comes back: the snapshot's datelog, with the live file's owner and mode, in the new PVC.
    const restored = path.join(await volumeDir("default", "example-volume-restored", on), "datelog");
    const live = await datelog("default");
    expect(await readFile(restored, "utf8")).toBe(await dump(job.status?.snapshotId ?? "", "/datelog"));
    const st = await stat(restored);
    expect({ uid: st.uid, mode: st.mode & 0o7777 }).toEqual({ uid: live.uid, mode: live.mode });
    expect(await resticCheck()).toMatch(/no errors were found/);
    await expectNoLeftovers(["default", "shop", NS], before, on);
  });
});

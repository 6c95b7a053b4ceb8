// What `kubectl apply -k .` installs is accepted by the real API server with the upstream CRDs' schemas, and
// each identity gets exactly the access it needs, checked against the cluster's real RBAC.
import { execFile } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, inject, it } from "vitest";
import { applyObjects, parseManifests, readManifestFiles } from "../../cluster/index.ts";
import { repoRoot, resolveBinary } from "../../cluster/toolchain.ts";
import { CHART_DIR } from "../../scripts/chart.ts";
import { isAlreadyExists } from "../../lib/k8s/rest.ts";
import { admin } from "../support/kube.ts";

const run = promisify(execFile);

const knative = [
  ...[
    "namespace.yaml",
    "reconcile-rbac.yaml",
    "apiserversource-rbac.yaml",
    "trigger-rbac.yaml",
    "tick-rbac.yaml",
    "reconcile-bounds.yaml",
    "service.yaml",
    "apiserversource.yaml",
    "ping/service.yaml",
    "ping/pingsource.yaml",
  ].map((f) => path.join(repoRoot, "knative", f)),
  path.join(repoRoot, "keda", "scaledjob.yaml"),
];

interface Review {
  status: { allowed: boolean; reason?: string };
}

async function can(user: string, verb: string, group: string, resource: string, namespace?: string, subresource?: string, name?: string): Promise<boolean> {
  const review = await admin().create<Review>("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
    apiVersion: "authorization.k8s.io/v1",
    kind: "SubjectAccessReview",
    spec: {
      user,
      groups: ["system:serviceaccounts", "system:serviceaccounts:walle-system", "system:authenticated"],
      resourceAttributes: { verb, group, resource, ...(namespace ? { namespace } : {}), ...(subresource ? { subresource } : {}), ...(name ? { name } : {}) },
    },
  });
  return review.status.allowed;
}

const reconcile = "system:serviceaccount:walle-system:walle-reconcile";
const source = "system:serviceaccount:walle-system:walle-apiserversource";
const tick = "system:serviceaccount:walle-system:walle-tick";

/** Namespace `name`, made unless it exists. */
async function namespace(name: string): Promise<void> {
  await admin()
    .create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } })
    .catch((e: unknown) => {
      if (!isAlreadyExists(e)) throw e;
    });
}

describe("the install manifests", () => {
  it("are accepted by the API server as written, with strict field validation against the upstream schemas", async () => {
    // Knative Eventing's namespace, as its install makes it: knative/ping reads Eventing's feature flags there.
    await namespace("knative-eventing");
    const objects = await readManifestFiles(knative);
    expect(objects.map((o) => o.kind)).toEqual(expect.arrayContaining(["Namespace", "ClusterRole", "Service", "ApiServerSource", "ScaledJob", "PingSource"]));
    await expect(applyObjects(admin(), objects, { dryRun: true })).resolves.toBeUndefined();
  });

  it("give the reconcile function what it drives, and no access to Secrets", async () => {
    for (const verb of ["get", "list", "watch", "create", "update", "patch", "delete"]) {
      expect(await can(reconcile, verb, "", "secrets", "walle-system"), `secrets ${verb}`).toBe(false);
      expect(await can(reconcile, verb, "", "secrets", "default"), `secrets ${verb}`).toBe(false);
    }
    expect(await can(reconcile, "create", "snapshot.storage.k8s.io", "volumesnapshots", "default")).toBe(true);
    expect(await can(reconcile, "patch", "snapshot.storage.k8s.io", "volumesnapshotcontents")).toBe(true);
    expect(await can(reconcile, "create", "batch", "jobs", "walle-system")).toBe(true);
    // It makes each namespace's walle-worker service account (the admission policy bounds which), but may not
    // mint its tokens, read, change or bind service accounts.
    expect(await can(reconcile, "create", "", "serviceaccounts", "default")).toBe(true);
    for (const verb of ["get", "update", "patch", "delete"])
      expect(await can(reconcile, verb, "", "serviceaccounts", "default"), `serviceaccounts ${verb}`).toBe(false);
    expect(await can(reconcile, "create", "", "serviceaccounts", "default", "token")).toBe(false);
    expect(await can(reconcile, "create", "rbac.authorization.k8s.io", "rolebindings", "default")).toBe(false);
    expect(await can(reconcile, "patch", "ros.io", "backupjobs", "default", "status")).toBe(true);
    expect(await can(reconcile, "create", "events.k8s.io", "events", "default")).toBe(true);
    // It reads a namespace's annotation to learn whether an admin allows full-fidelity workers there, and lists
    // namespaces for the namespaceSelector of a schedule's run asked for, but cannot set that annotation itself.
    expect(await can(reconcile, "get", "", "namespaces")).toBe(true);
    expect(await can(reconcile, "list", "", "namespaces")).toBe(true);
    for (const verb of ["watch", "update", "patch"]) expect(await can(reconcile, verb, "", "namespaces"), `namespaces ${verb}`).toBe(false);
    // A run asked for by a schedule's ros.io/backup-requested annotation: its BackupSet and the schedule's answer;
    // it neither edits the schedule (nor sets that annotation) nor deletes old runs, which stays the tick's.
    expect(await can(reconcile, "create", "ros.io", "backupsets")).toBe(true);
    expect(await can(reconcile, "patch", "ros.io", "backupschedules", undefined, "status")).toBe(true);
    expect(await can(reconcile, "patch", "ros.io", "backupschedules")).toBe(false);
    expect(await can(reconcile, "delete", "ros.io", "backupsets")).toBe(false);
    // Not more than it needs: it never edits specs, deletes Walle's objects, or makes workloads.
    expect(await can(reconcile, "update", "ros.io", "backupjobs", "default")).toBe(false);
    expect(await can(reconcile, "delete", "ros.io", "backupjobs", "default")).toBe(false);
    expect(await can(reconcile, "create", "", "pods", "default")).toBe(false);
    // Snapshot hooks: RBAC grants pods/exec everywhere; the admission policy walle-hook-exec bounds it (hooks.test.ts).
    expect(await can(reconcile, "create", "", "pods", "default", "exec")).toBe(true);
    // Its permits for the policy: that one ConfigMap, and no other.
    expect(await can(reconcile, "patch", "", "configmaps", "walle-system", undefined, "walle-exec-permits")).toBe(true);
    expect(await can(reconcile, "patch", "", "configmaps", "walle-system", undefined, "other")).toBe(false);
    expect(await can(reconcile, "patch", "", "configmaps", "default", undefined, "walle-exec-permits")).toBe(false);
    expect(await can(reconcile, "delete", "", "configmaps", "walle-system", undefined, "walle-exec-permits")).toBe(false);
    expect(await can(reconcile, "create", "", "pods", "default", "attach")).toBe(false);
    expect(await can(reconcile, "create", "", "pods", "default", "portforward")).toBe(false);
    expect(await can(reconcile, "delete", "", "persistentvolumes")).toBe(false);
    // It asks the API server who sent a trigger and what RBAC allows them, and is no trigger admin itself.
    expect(await can(reconcile, "create", "authentication.k8s.io", "tokenreviews")).toBe(true);
    expect(await can(reconcile, "create", "authorization.k8s.io", "subjectaccessreviews")).toBe(true);
    expect(await can(reconcile, "resync", "ros.io", "backupjobs")).toBe(false);
    expect(await can(reconcile, "backup", "ros.io", "repositories", "walle-system")).toBe(false);
  });

  it("give the tick what schedules, history and the resync need, and no access to Secrets", async () => {
    for (const verb of ["get", "list", "watch", "create", "update", "patch", "delete"]) {
      expect(await can(tick, verb, "", "secrets", "walle-system"), `secrets ${verb}`).toBe(false);
      expect(await can(tick, verb, "", "secrets", "default"), `secrets ${verb}`).toBe(false);
    }
    expect(await can(tick, "list", "ros.io", "backupschedules")).toBe(true);
    expect(await can(tick, "patch", "ros.io", "backupschedules", undefined, "status")).toBe(true);
    expect(await can(tick, "create", "ros.io", "backupsets")).toBe(true);
    expect(await can(tick, "delete", "ros.io", "backupsets")).toBe(true);
    expect(await can(tick, "create", "ros.io", "backupjobs", "default")).toBe(true);
    expect(await can(tick, "list", "", "pods")).toBe(true);
    expect(await can(tick, "list", "", "namespaces")).toBe(true);
    expect(await can(tick, "create", "batch", "jobs", "walle-system")).toBe(true);
    expect(await can(tick, "create", "", "serviceaccounts", "walle-system")).toBe(true);
    expect(await can(tick, "create", "", "serviceaccounts", "walle-system", "token")).toBe(false);
    // Not more: it never edits a schedule's spec, deletes BackupJobs itself (they go with their set), or runs pods.
    expect(await can(tick, "update", "ros.io", "backupschedules")).toBe(false);
    expect(await can(tick, "delete", "ros.io", "backupschedules")).toBe(false);
    expect(await can(tick, "delete", "ros.io", "backupjobs", "default")).toBe(false);
    expect(await can(tick, "create", "", "pods", "default")).toBe(false);
    // The resync may start a BackupJob's hooks, bounded as the reconcile function's are.
    expect(await can(tick, "create", "", "pods", "default", "exec")).toBe(true);
    expect(await can(tick, "create", "", "pods", "default", "attach")).toBe(false);
    expect(await can(tick, "delete", "", "persistentvolumes")).toBe(false);
  });

  it("let the ApiServerSource read what it watches and change nothing", async () => {
    for (const [group, resource] of [
      ["ros.io", "backupjobs"],
      ["batch", "jobs"],
      ["snapshot.storage.k8s.io", "volumesnapshots"],
      ["", "persistentvolumeclaims"],
    ] as const) {
      for (const verb of ["get", "list", "watch"]) expect(await can(source, verb, group, resource), `${verb} ${resource}`).toBe(true);
      expect(await can(source, "create", group, resource, "default")).toBe(false);
    }
    expect(await can(source, "get", "", "secrets", "default")).toBe(false);
    // Pods are not watched (their Job's counts say what moves a run on), so the source may not read them.
    expect(await can(source, "list", "", "pods")).toBe(false);
  });

  it("as the Helm chart renders them with the original's values, into namespace walle: accepted as written (strict, dry run)", async () => {
    await namespace("walle");
    const helm = await resolveBinary("helm");
    const { stdout } = await run(
      helm,
      ["template", "walle", path.join(repoRoot, CHART_DIR), "--namespace", "walle", "--values", path.join(repoRoot, "examples", "values.yml")],
      { maxBuffer: 16 * 1024 * 1024 },
    );
    const objects = parseManifests(stdout);
    expect(objects.map((o) => o.kind)).toEqual(
      expect.arrayContaining(["ConfigMap", "ClusterRole", "Service", "ApiServerSource", "ScaledJob", "ValidatingAdmissionPolicy"]),
    );
    await expect(applyObjects(admin(), objects, { dryRun: true })).resolves.toBeUndefined();
  });

  it("without KEDA, as the top-level kustomization says (keda dropped, the knative/ping component added): a tick with its own identity, accepted (dry run)", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "walle-ping-"));
    const at = (d: string) => path.relative(dir, path.join(repoRoot, d));
    await writeFile(
      path.join(dir, "kustomization.yaml"),
      `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [${at("crds")}, ${at("knative")}]\ncomponents: [${at("knative/ping")}]\n`,
    );
    const { stdout } = await run("kubectl", ["kustomize", dir], { maxBuffer: 16 * 1024 * 1024 });
    const objects = parseManifests(stdout);
    expect(objects.filter((o) => o.kind === "ScaledJob")).toEqual([]);
    // The tick reads Eventing's feature flags when it starts (lib/app/sender-identity.ts): a Role in Eventing's
    // namespace, which Knative Eventing's install makes.
    expect(objects.filter((o) => o.metadata.namespace === "knative-eventing").map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      "Role/walle-tick-eventing-features",
      "RoleBinding/walle-tick-eventing-features",
    ]);
    await namespace("knative-eventing");
    expect(objects.filter((o) => o.kind === "PingSource").map((o) => o.metadata.name)).toEqual(["walle-tick"]);
    // Every Knative Service runs as a service account the install makes.
    const accounts = objects.filter((o) => o.kind === "ServiceAccount").map((o) => `${o.metadata.namespace}/${o.metadata.name}`);
    const runAs = objects
      .filter((o) => o.kind === "Service" && (o.apiVersion ?? "").startsWith("serving.knative.dev/"))
      .map(
        (o) =>
          `${o.metadata.namespace}/${(o as unknown as { spec: { template: { spec: { serviceAccountName: string } } } }).spec.template.spec.serviceAccountName}`,
      );
    expect(runAs.sort()).toEqual(["walle-system/walle-reconcile", "walle-system/walle-tick"]);
    expect(runAs.filter((a) => !accounts.includes(a))).toEqual([]);
    await expect(applyObjects(admin(), objects, { dryRun: true })).resolves.toBeUndefined();
  });

  it("`npm run --silent crdgen -- --stdout | kubectl apply -f -` applies the four CRDs, as the original's crdgen did", async () => {
    const { stdout } = await run(
      "sh",
      [
        "-c",
        `"${process.execPath}" scripts/crdgen.ts --stdout | kubectl --kubeconfig "${inject("kubeconfig")}" apply --server-side --force-conflicts --dry-run=server -f -`,
      ],
      { cwd: repoRoot },
    );
    expect(stdout.trim().split("\n").sort()).toEqual([
      "customresourcedefinition.apiextensions.k8s.io/backupjobs.ros.io serverside-applied (server dry run)",
      "customresourcedefinition.apiextensions.k8s.io/backuprestores.ros.io serverside-applied (server dry run)",
      "customresourcedefinition.apiextensions.k8s.io/backupschedules.ros.io serverside-applied (server dry run)",
      "customresourcedefinition.apiextensions.k8s.io/backupsets.ros.io serverside-applied (server dry run)",
    ]);
  });
});

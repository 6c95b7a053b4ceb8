import { describe, expect, it } from "vitest";
import { INSTALL_NAMESPACE, resourcePath, ServiceAccount } from "../../lib/api/index.ts";
import { ApiError } from "../../lib/k8s/rest.ts";
import type { RestClient } from "../../lib/k8s/rest.ts";
import { admin, clientForServiceAccount, clientForUser, createNamespace, grantRole, waitFor } from "../support/kube.ts";

// The tenant guard (crds/tenant-guard.yaml) with real credentials: a tenant user with a client certificate,
// Walle's service accounts with real tokens, and an impostor service account that only shares their name.

const TENANT = "tenant-alice";

type GuardedKind = "BackupJob" | "BackupRestore";

function guarded(kind: GuardedKind, namespace: string, name: string, repository: Record<string, string>) {
  const spec = kind === "BackupJob" ? { sourcePvc: "data", repository } : { repository, source: { latest: { pvc: "data" } }, target: { existingPvc: "data" } };
  return { apiVersion: "ros.io/v1", kind, metadata: { name, namespace }, spec };
}

/** RBAC for the tenant, for Walle's service accounts and for the impostor, to write backups in `namespace`. */
async function grantBackupWriters(namespace: string): Promise<void> {
  await grantRole(
    namespace,
    "backup-writer",
    [{ apiGroups: ["ros.io"], resources: ["backupjobs", "backuprestores"], verbs: ["get", "list", "create", "update", "patch", "delete"] }],
    [
      { apiGroup: "rbac.authorization.k8s.io", kind: "User", name: TENANT },
      ...Object.values(ServiceAccount).map((name) => ({ kind: "ServiceAccount" as const, name, namespace: INSTALL_NAMESPACE })),
      { kind: "ServiceAccount", name: ServiceAccount.Reconcile, namespace },
    ],
  );
}

function create(client: RestClient, object: ReturnType<typeof guarded>) {
  return client.create<{ metadata: { name: string } }>(resourcePath(object.kind as GuardedKind, object.metadata.namespace), object);
}

async function denial(request: Promise<unknown>): Promise<ApiError> {
  const outcome = await request.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(outcome instanceof ApiError)) throw new Error("expected the tenant guard to deny the request");
  return outcome;
}

const isGuardDenial = (err: ApiError): boolean => err.code === 403 && err.message.includes("walle-tenant-guard");

interface Setup {
  readonly tenantNamespace: string;
  readonly otherNamespace: string;
  readonly tenant: RestClient;
}

/**
 * Two namespaces and a tenant that may write backups in the first. Waits until RBAC has caught up and the
 * policy is in force (both are loaded by the apiserver asynchronously), using dry runs that store nothing.
 */
async function setUp(): Promise<Setup> {
  const tenantNamespace = await createNamespace("tenant-a");
  const otherNamespace = await createNamespace("tenant-b");
  await grantBackupWriters(tenantNamespace);
  const tenant = await clientForUser(TENANT);
  const probe = (repository: Record<string, string>) =>
    tenant.create(resourcePath("BackupJob", tenantNamespace), guarded("BackupJob", tenantNamespace, "probe", repository), {
      dryRun: "All",
    });
  await waitFor(() => probe({ name: "repo", namespace: tenantNamespace }).then(() => true), "RBAC for the tenant");
  await waitFor(
    () =>
      probe({ name: "repo", namespace: otherNamespace }).then(
        () => false,
        (err: unknown) => err instanceof ApiError && isGuardDenial(err),
      ),
    "the tenant guard to be in force",
  );
  return { tenantNamespace, otherNamespace, tenant };
}

describe("the tenant guard", () => {
  it.each(["BackupJob", "BackupRestore"] as const)("denies a tenant's %s that names another namespace's repository, and admits Walle's", async (kind) => {
    const { tenantNamespace, otherNamespace, tenant } = await setUp();
    const crossNamespace = { name: "shared-repo", namespace: otherNamespace };

    const error = await denial(create(tenant, guarded(kind, tenantNamespace, "from-tenant", crossNamespace)));
    expect(error.code).toBe(403);
    expect(error.reason).toBe("Forbidden");
    expect(error.message).toContain("ValidatingAdmissionPolicy 'walle-tenant-guard'");
    expect(error.message).toContain(
      `spec.repository.namespace: a ${kind} in namespace ${tenantNamespace} may only use a repository Secret ` +
        `in its own namespace, not in ${otherNamespace}`,
    );

    for (const account of Object.values(ServiceAccount)) {
      const walle = await clientForServiceAccount(INSTALL_NAMESPACE, account);
      await waitFor(
        () => create(walle, guarded(kind, tenantNamespace, `from-${account}`, crossNamespace)),
        `${account} to create a ${kind} with another namespace's repository`,
      );
    }
  });

  it("admits a tenant's BackupJob that names a repository in its own namespace", async () => {
    const { tenantNamespace, tenant } = await setUp();
    const created = await create(tenant, guarded("BackupJob", tenantNamespace, "own", { name: "repo", namespace: tenantNamespace }));
    expect(created.metadata.name).toBe("own");
  });

  it("treats an omitted repository namespace as walle-system, which is another namespace", async () => {
    const { tenantNamespace, tenant } = await setUp();
    const error = await denial(create(tenant, guarded("BackupJob", tenantNamespace, "implicit", { name: "repo" })));
    expect(isGuardDenial(error)).toBe(true);
    expect(error.message).toContain(`not in ${INSTALL_NAMESPACE}`);
  });

  it("does not trust a service account that only shares the name of Walle's", async () => {
    const { tenantNamespace, otherNamespace } = await setUp();
    await admin().create(`/api/v1/namespaces/${tenantNamespace}/serviceaccounts`, {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: ServiceAccount.Reconcile },
    });
    const impostor = await clientForServiceAccount(tenantNamespace, ServiceAccount.Reconcile);
    const job = guarded("BackupJob", tenantNamespace, "impostor", { name: "repo", namespace: otherNamespace });
    const error = await waitFor(() => denial(create(impostor, job)).then((err) => isGuardDenial(err) && err), "the impostor's request to reach the guard");
    expect(error.message).toContain(`not in ${otherNamespace}`);
  });

  it("lets the tenant edit labels of a BackupJob Walle created with a shared repository", async () => {
    const { tenantNamespace, otherNamespace, tenant } = await setUp();
    const walle = await clientForServiceAccount(INSTALL_NAMESPACE, ServiceAccount.Tick);
    const job = guarded("BackupJob", tenantNamespace, "scheduled", { name: "shared-repo", namespace: otherNamespace });
    await waitFor(() => create(walle, job), "walle-tick to create the BackupJob");
    const path = resourcePath("BackupJob", tenantNamespace, "scheduled");
    const patched = await tenant.patch<{ metadata: { labels: Record<string, string> } }>(path, {
      metadata: { labels: { team: "a" } },
    });
    expect(patched.metadata.labels).toEqual({ team: "a" });
  });

  it("admits snapshot hooks and backup commands only from who may exec into the namespace's pods", async () => {
    const { tenantNamespace, tenant } = await setUp();
    const withHook = (name: string, extra: Record<string, string>) => {
      const job = guarded("BackupJob", tenantNamespace, name, { name: "repo", namespace: tenantNamespace });
      return { ...job, spec: { ...job.spec, ...extra } };
    };
    // The tenant may create BackupJobs, but not exec: Walle would be its way in.
    for (const [name, extra] of [
      ["before", { beforeSnapshot: "cat /etc/shadow" }],
      ["after", { afterSnapshot: "id" }],
      ["dump", { backupCommand: "env" }],
    ] as const) {
      const error = await denial(create(tenant, withHook(name, extra)));
      expect(isGuardDenial(error), error.message).toBe(true);
      expect(error.message).toContain(`only who may exec into them (create pods/exec there) may set them`);
    }
    // Without a command, as before.
    await expect(create(tenant, withHook("plain", {}))).resolves.toMatchObject({ metadata: { name: "plain" } });
    // Given exec in the namespace (as Kubernetes' edit and admin roles do), the same BackupJob is admitted.
    await grantRole(
      tenantNamespace,
      "exec",
      [{ apiGroups: [""], resources: ["pods/exec"], verbs: ["create"] }],
      [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: TENANT }],
    );
    const admitted = await waitFor(
      () => create(tenant, withHook("before-2", { beforeSnapshot: "sync" })).catch(() => undefined),
      "RBAC to grant the tenant exec",
    );
    expect(admitted.metadata.name).toBe("before-2");
  });
});

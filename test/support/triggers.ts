// Callers of Walle's triggers as a cluster has them: service accounts with exactly the RBAC a test gives them, and
// their real tokens from the TokenRequest API, for Walle's audience or another.
import { INSTALL_NAMESPACE, WORKER_SERVICE_ACCOUNT } from "../../lib/api/constants.ts";
import { admin, grantRole, workerAccount, type PolicyRule } from "./kube.ts";

export interface CallerGrants {
  /** Rules in the caller's own namespace. */
  readonly own?: PolicyRule[];
  /** Verbs on shared repositories (repositories.ros.io in the install namespace), by Secret name. */
  readonly repositories?: { readonly verbs: string[]; readonly names: string[] };
  /** A ClusterRole to bind cluster-wide, e.g. walle-trigger-admin. */
  readonly clusterRole?: string;
}

/** A new service account `name` in `ns` with `grants`, and a token of it for `audience` (default Walle's, "walle"). */
export async function caller(ns: string, name: string, grants: CallerGrants = {}, audience: string | null = "walle"): Promise<string> {
  await admin().create(`/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: "v1", kind: "ServiceAccount", metadata: { name } });
  const subject = { kind: "ServiceAccount" as const, name, namespace: ns };
  if (grants.own) await grantRole(ns, `${name}-own`, grants.own, [subject]);
  if (grants.repositories) {
    await grantRole(
      INSTALL_NAMESPACE,
      `${ns}-${name}-repos`,
      [{ apiGroups: ["ros.io"], resources: ["repositories"], verbs: grants.repositories.verbs, resourceNames: grants.repositories.names }],
      [subject],
    );
  }
  if (grants.clusterRole) {
    await admin().create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: `${ns}-${name}-${grants.clusterRole}` },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: grants.clusterRole },
      subjects: [subject],
    });
  }
  const tr = await admin().create<{ status: { token: string } }>(`/api/v1/namespaces/${ns}/serviceaccounts/${name}/token`, {
    apiVersion: "authentication.k8s.io/v1",
    kind: "TokenRequest",
    spec: { expirationSeconds: 3600, ...(audience ? { audiences: [audience] } : {}) },
  });
  return tr.status.token;
}

/** Rules that let a caller force backups (and restores) in its namespace, as the walle-edit role does. */
export const FORCE_BACKUPS: PolicyRule[] = [{ apiGroups: ["ros.io"], resources: ["backupjobs", "backuprestores"], verbs: ["create"] }];

/**
 * A pod in `ns` with `labels` (a run's worker labels, or none), running as `account` (the workers' own, made here
 * as Walle makes it, unless another is named), and a token bound to it for the progress audience, as the kubelet
 * projects one into a worker.
 */
export async function podToken(
  ns: string,
  pod: string,
  labels: Record<string, string>,
  account: string = WORKER_SERVICE_ACCOUNT,
  audience = "walle-progress",
): Promise<string> {
  if (account === WORKER_SERVICE_ACCOUNT) await workerAccount(ns);
  const made = await admin().create<{ metadata: { uid: string } }>(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: pod, labels },
    spec: { serviceAccountName: account, automountServiceAccountToken: false, containers: [{ name: "c", image: "registry.example/sleeper:1" }] },
  });
  const tr = await admin().create<{ status: { token: string } }>(`/api/v1/namespaces/${ns}/serviceaccounts/${account}/token`, {
    apiVersion: "authentication.k8s.io/v1",
    kind: "TokenRequest",
    spec: { audiences: [audience], expirationSeconds: 600, boundObjectRef: { apiVersion: "v1", kind: "Pod", name: pod, uid: made.metadata.uid } },
  });
  return tr.status.token;
}

/**
 * A Reference-mode ApiServerSource event for one object, as Knative's adapter sends it ({kind, namespace, name,
 * apiVersion} and no object): what a test sends to step a reconcile function that has no event source of its own.
 */
export function refEvent(
  url: string,
  ref: { apiVersion: string; kind: string; namespace: string; name: string },
  type = "dev.knative.apiserver.ref.update",
): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "ce-specversion": "1.0",
      "ce-id": crypto.randomUUID(),
      "ce-source": "/test",
      "ce-type": type,
      "ce-kind": ref.kind,
      "ce-name": ref.name,
      "ce-namespace": ref.namespace,
    },
    body: JSON.stringify(ref),
  });
}

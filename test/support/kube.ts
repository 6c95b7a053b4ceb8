// Helpers for tests against the shared local cluster: admin and per-user clients, unique namespaces, waiting.
import { KubeConfig } from "@kubernetes/client-node";
import { inject, onTestFinished } from "vitest";
import { randomBytes } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { serviceAccountKubeconfig, userKubeconfig } from "../../cluster/index.ts";
import { credentialsFromKubeconfig } from "../../cluster/kubeconfig.ts";
import { workerServiceAccount } from "../../lib/core/builders.ts";
import { getOrNull, perform } from "../../lib/k8s/actions.ts";
import { RestClient } from "../../lib/k8s/rest.ts";

let adminClient: RestClient | undefined;

/** The admin REST client (O=system:masters). */
export function admin(): RestClient {
  adminClient ??= new RestClient(credentialsFromKubeconfig(inject("kubeconfig")));
  return adminClient;
}

/** The admin kubeconfig for @kubernetes/client-node. */
export function adminKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(inject("kubeconfig"));
  return kc;
}

function loaded(file: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  return kc;
}

export async function kubeconfigFileForUser(user: string, groups: string[] = []): Promise<string> {
  return userKubeconfig(inject("clusterStateDir"), inject("clusterServer"), user, groups);
}

/** A client acting as `user` in `groups`, with a real client certificate signed by the cluster's CA. */
export async function clientForUser(user: string, groups: string[] = []): Promise<RestClient> {
  return new RestClient(credentialsFromKubeconfig(await kubeconfigFileForUser(user, groups)));
}

export async function kubeConfigForUser(user: string, groups: string[] = []): Promise<KubeConfig> {
  return loaded(await kubeconfigFileForUser(user, groups));
}

/** A client acting as a service account, with a real token from the TokenRequest API. */
export async function clientForServiceAccount(namespace: string, name: string): Promise<RestClient> {
  return new RestClient(credentialsFromKubeconfig(await serviceAccountKubeconfig(admin(), inject("clusterStateDir"), namespace, name)));
}

export async function kubeConfigForServiceAccount(namespace: string, name: string): Promise<KubeConfig> {
  return loaded(await serviceAccountKubeconfig(admin(), inject("clusterStateDir"), namespace, name));
}

/**
 * The workers' service account in `ns`, made as Walle makes it before a namespace's first worker: by the executor's
 * own create, which takes AlreadyExists as done.
 */
export async function workerAccount(ns: string): Promise<void> {
  await perform(admin(), { op: "create", manifest: workerServiceAccount(ns) });
}

/**
 * A fresh namespace for one test, deleted when the test ends. It is returned once the serviceaccount controller has
 * made its `default` account, as a workload finds a namespace: a pod or a TokenRequest for that account is refused
 * until then.
 */
export async function createNamespace(prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString("hex")}`.toLowerCase();
  await admin().create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name, labels: { "walle.test/namespace": "true" } } });
  onTestFinished(async () => {
    await admin()
      .delete(`/api/v1/namespaces/${name}`)
      .catch(() => {});
  });
  await waitFor(
    async () => (await getOrNull(admin(), `/api/v1/namespaces/${name}/serviceaccounts/default`)) ?? undefined,
    `namespace ${name}'s default service account`,
    30_000,
  );
  return name;
}

/** Polls until `fn` returns a value (not undefined/false), or fails naming what it waited for. */
export async function waitFor<T>(fn: () => Promise<T | undefined | false>, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

export type Subject = { kind: "User"; apiGroup: "rbac.authorization.k8s.io"; name: string } | { kind: "ServiceAccount"; name: string; namespace: string };

/** A Role with `rules` in `namespace`, bound under the same name to `subjects`. */
export async function grantRole(namespace: string, name: string, rules: PolicyRule[], subjects: Subject[]): Promise<void> {
  const rbac = `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}`;
  await admin().create(`${rbac}/roles`, { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name }, rules });
  await admin().create(`${rbac}/rolebindings`, {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
    subjects,
  });
}

/**
 * SIGKILL to every process of one running container of the local node, found by its cgroup (the pod's UID and the
 * container's id), as the OOM killer or a lost node ends it: nothing of it gets to clean up. The names of the
 * processes killed.
 */
export async function killContainer(podUid: string, containerId: string): Promise<string[]> {
  const killed: string[] = [];
  for (const p of await containerProcesses(podUid, containerId)) {
    try {
      process.kill(p.pid, "SIGKILL");
      killed.push(p.comm);
    } catch {
      // It ended meanwhile.
    }
  }
  return killed;
}

/** The processes of one running container of the local node, found by its cgroup, with their names. */
export async function containerProcesses(podUid: string, containerId: string): Promise<{ pid: number; comm: string }[]> {
  const id = containerId.replace(/^[a-z]+:\/\//, "");
  const found: { pid: number; comm: string }[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const [cgroup, comm] = await Promise.all([readFile(`/proc/${pid}/cgroup`, "utf8"), readFile(`/proc/${pid}/comm`, "utf8")]).catch(() => ["", ""]);
    if (cgroup.includes(`pod${podUid}`) && cgroup.includes(id)) found.push({ pid: Number(pid), comm: comm.trim() });
  }
  return found;
}

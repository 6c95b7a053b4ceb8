// Who may trigger what, against the local cluster's real authentication and RBAC (README "Who may trigger what"):
// each row is one attempt at the reconcile function and what the caller sees. A watch on every BackupJob and
// BackupRestore, started before the first attempt, shows that no refused attempt created anything.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { LOCAL_USER, localUserToken } from "../../cluster/controlplane.ts";
import { INSTALL_NAMESPACE, ServiceAccount } from "../../lib/api/constants.ts";
import { Informer, type KubeObject } from "../../lib/k8s/informer.ts";
import { pvcWithData } from "../support/backup-fixtures.ts";
import { admin, createNamespace, waitFor } from "../support/kube.ts";
import { trickle } from "../support/slow-loris.ts";
import { caller, FORCE_BACKUPS } from "../support/triggers.ts";
import { startWalle, type RunningWalle } from "../support/walle.ts";
import { serviceAccountToken } from "../../cluster/index.ts";

interface Reply {
  status: number;
  body: { error?: string; backupJob?: { name: string }; backupRestore?: { name: string } };
}

/** Every BackupJob and BackupRestore added anywhere while the file runs. */
const added: string[] = [];
const informers: Informer<KubeObject>[] = [];

beforeAll(async () => {
  for (const path of ["/apis/ros.io/v1/backupjobs", "/apis/ros.io/v1/backuprestores"]) {
    const i = new Informer<KubeObject>(admin(), path, (type, obj) => {
      if (type === "add") added.push(`${obj.kind ?? path.split("/").pop()} ${obj.metadata.namespace}/${obj.metadata.name}`);
    });
    await i.start();
    informers.push(i);
  }
});
afterAll(() => informers.forEach((i) => i.stop()));

async function send(walle: RunningWalle, type: string, data: unknown, token?: string, body?: string): Promise<Reply> {
  const res = await fetch(walle.url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "ce-specversion": "1.0",
      "ce-id": randomUUID(),
      "ce-source": "/test/trigger-auth",
      "ce-type": type,
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body ?? JSON.stringify(data),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Reply["body"]) : {} };
}

const BACKUP = "io.ros.walle.backup.requested";
const RESTORE = "io.ros.walle.restore.requested";
const RESYNC = "io.ros.walle.resync";

/** A JWT of the right shape, signed by nobody the API server trusts. */
function forgedToken(ns: string): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const claims = {
    iss: "https://kubernetes.default.svc.cluster.local",
    sub: `system:serviceaccount:${ns}:admin`,
    aud: ["walle"],
    exp: Math.floor(Date.now() / 1000) + 3600,
  };
  return `${part({ alg: "RS256", kid: "forged" })}.${part(claims)}.${Buffer.from("not a signature").toString("base64url")}`;
}

describe("who may trigger what", () => {
  it("refuses every trigger it cannot authenticate or RBAC does not allow, and creates nothing for them", async () => {
    const walle = await startWalle({ eventSource: false });
    const ns = await createNamespace("trig");
    const other = await createNamespace("trig-other");
    await pvcWithData(ns, "data", { "a.txt": "a" });
    const shared = `shared-${ns}`;
    const own = { namespace: ns, pvc: "data", repository: { name: "repo", namespace: ns } };
    const intoShared = { namespace: ns, pvc: "data", repository: { name: shared } };
    const restoreOther = {
      namespace: ns,
      repository: { name: "repo", namespace: ns },
      source: { latest: { pvc: "data", namespace: other } },
      target: { newPvc: { name: "copy", size: "1Gi" } },
    };

    const nobody = await caller(ns, "nobody");
    const ci = await caller(ns, "ci", { own: FORCE_BACKUPS });
    const otherRepo = await caller(ns, "other-repo", { own: FORCE_BACKUPS, repositories: { verbs: ["backup"], names: [`not-${shared}`] } });
    const vault = await caller(ns, "vault-audience", { own: FORCE_BACKUPS }, "vault");
    const gone = await caller(ns, "deleted", { own: FORCE_BACKUPS });
    await admin().delete(`/api/v1/namespaces/${ns}/serviceaccounts/deleted`);
    const reconcileItself = (await serviceAccountToken(admin(), INSTALL_NAMESPACE, ServiceAccount.Reconcile)).token;
    const alice = await localUserToken(inject("clusterStateDir"));

    const rows: [string, Reply, number, RegExp][] = [
      ["no token at all", await send(walle, BACKUP, own), 401, /needs a Kubernetes bearer token/],
      ["a forged token", await send(walle, BACKUP, own, forgedToken(ns)), 401, /was not accepted/],
      // Authentication comes before validation: a malformed request tells an unknown caller nothing of the schema.
      ["invalid data with no token", await send(walle, BACKUP, { pvc: "Not A Name" }), 401, /needs a Kubernetes bearer token/],
      ["invalid data with a forged token", await send(walle, RESTORE, { nonsense: true }, forgedToken(ns)), 401, /was not accepted/],
      ["a real token for another audience (vault)", await send(walle, BACKUP, own, vault), 401, /was not accepted for audience walle/],
      ["the token of a service account since deleted", await send(walle, BACKUP, own, gone), 401, /was not accepted/],
      [
        "a service account with no permission",
        await send(walle, BACKUP, own, nobody),
        403,
        new RegExp(`system:serviceaccount:${ns}:nobody may not .* create backupjobs\\.ros\\.io in namespace ${ns}`),
      ],
      ["a user (alice) with no role in the namespace", await send(walle, BACKUP, own, alice), 403, new RegExp(`^${LOCAL_USER.name} may not`)],
      [
        "a shared repository without its grant",
        await send(walle, BACKUP, intoShared, ci),
        403,
        new RegExp(`backup repositories\\.ros\\.io ${shared} in namespace walle-system`),
      ],
      [
        "a shared repository with a grant for another one",
        await send(walle, BACKUP, intoShared, otherRepo),
        403,
        new RegExp(`backup repositories\\.ros\\.io ${shared}`),
      ],
      [
        "a restore of another namespace's PVC",
        await send(walle, RESTORE, restoreOther, ci),
        403,
        new RegExp(`create backuprestores\\.ros\\.io in namespace ${other}`),
      ],
      ["a resync by a tenant", await send(walle, RESYNC, {}, ci), 403, /resync backupjobs\.ros\.io in all namespaces/],
      ["a resync with no token", await send(walle, RESYNC, {}), 401, /needs a Kubernetes bearer token/],
      // Its service account may create BackupJobs (the forced ones are its), but no grant names it for a shared repository.
      [
        "the reconcile function's own token, into a shared repository",
        await send(walle, BACKUP, intoShared, reconcileItself),
        403,
        new RegExp(`walle-reconcile may not .*backup repositories\\.ros\\.io ${shared}`),
      ],
      [
        "a body over 1 MiB",
        await send(walle, BACKUP, undefined, ci, JSON.stringify({ ...own, padding: "x".repeat(1024 * 1024) })),
        413,
        /larger than the limit/,
      ],
    ];
    expect(rows.map(([what, reply]) => [what, reply.status])).toEqual(rows.map(([what, , status]) => [what, status]));
    for (const [what, reply, , message] of rows) expect(reply.body.error, what).toMatch(message);

    // The allowed ones, after: each creates what it asked for, and the watch sees it (so it saw the rest too).
    const allowed = await send(walle, BACKUP, own, ci);
    expect(allowed.status).toBe(202);
    const apiAudience = await send(walle, BACKUP, own, await caller(ns, "kubectl-default", { own: FORCE_BACKUPS }, null));
    expect(apiAudience.status).toBe(202);
    // alice, once she may edit the namespace: Kubernetes' edit role, which Walle's walle-edit rules join.
    await admin().create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "alice-edit" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "edit" },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: LOCAL_USER.name }],
    });
    const byAlice = await waitFor(async () => {
      const r = await send(walle, BACKUP, own, alice);
      return r.status === 202 ? r : undefined;
    }, "the edit role's aggregation to reach alice");
    const withGrant = await send(
      walle,
      BACKUP,
      intoShared,
      await caller(ns, "team", { own: FORCE_BACKUPS, repositories: { verbs: ["backup"], names: [shared] } }),
    );
    expect(withGrant.status).toBe(202);
    const admins = await caller(ns, "admin-tool", { clusterRole: "walle-trigger-admin" });
    expect((await send(walle, RESYNC, {}, admins)).status).toBe(200);

    const made = [allowed, apiAudience, byAlice, withGrant].map((r) => `BackupJob ${ns}/${r.body.backupJob?.name}`);
    await waitFor(async () => made.every((m) => added.includes(m)), "the watch to see the allowed BackupJobs");
    expect(added.filter((a) => a.includes(ns) || a.includes(other)).sort()).toEqual([...new Set(made)].sort());
  });

  it("cuts off a sender that trickles its request (a slow-loris) at the request deadline", async () => {
    const walle = await startWalle({ eventSource: false });
    const { hostname, port } = new URL(walle.url);
    // A byte a second: never the whole body, and the connection never idle.
    const answer = await trickle(Number(port), "POST / HTTP/1.1\r\nHost: walle\r\nContent-Type: application/json\r\nContent-Length: 1000000", 1000, hostname);
    // The receiver's request deadline (30 s) answers, not the client giving up.
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
  }, 60_000);
});

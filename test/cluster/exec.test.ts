// A command run in a container through the API server's pods/exec (lib/k8s/exec.ts), against the local cluster's
// real kubelet, containerd and runc, as a user whose only right in the namespace is pods/exec: what snapshot hooks
// stand on. The container runs as a non-root user, as an application's would.
import { describe, expect, it } from "vitest";
import { execInContainer } from "../../lib/k8s/exec.ts";
import { ApiError, type RestClient } from "../../lib/k8s/rest.ts";
import { admin, clientForUser, createNamespace, waitFor } from "../support/kube.ts";

let ns: string;
let hooks: RestClient;
// hook-runner may get and create pods/exec in the namespace, as kubectl exec needs; exec-getter only get.

async function role(name: string, verbs: string[]): Promise<void> {
  await admin().create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: { name },
    rules: [{ apiGroups: [""], resources: ["pods/exec"], verbs }],
  });
  await admin().create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
    subjects: [{ kind: "User", apiGroup: "rbac.authorization.k8s.io", name }],
  });
}

/** Namespace `ns` (deleted with the test) with pod db-0 running, and the users hook-runner and exec-getter. */
async function setUp(): Promise<void> {
  ns = await createNamespace("exec");
  await admin().create(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "db-0" },
    spec: {
      securityContext: { runAsUser: 999, runAsGroup: 999 },
      containers: [{ name: "db", image: "busybox:1.36", command: ["sleep", "infinity"] }],
    },
  });
  await waitFor(
    async () => (await admin().get<{ status?: { phase?: string } }>(`/api/v1/namespaces/${ns}/pods/db-0`)).status?.phase === "Running",
    "pod db-0 Running",
    120_000,
  );
  await role("hook-runner", ["get", "create"]);
  await role("exec-getter", ["get"]);
  hooks = await clientForUser("hook-runner");
}

describe("a command run by pods/exec", () => {
  const db = () => ({ namespace: ns, pod: "db-0", container: "db" });

  it("reports its exit code and its output, keeps the tail of a long one, stops waiting at its deadline, and is refused as the API server refuses", async () => {
    await setUp();
    // The exit code and the output, from the container as its user.
    expect(await execInContainer(hooks, db(), ["sh", "-c", "id -u; echo frozen > /tmp/marker; cat /tmp/marker"], 30_000)).toEqual({
      exitCode: 0,
      output: "999\nfrozen\n",
      timedOut: false,
    });
    const failed = await execInContainer(hooks, db(), ["sh", "-c", "echo cannot lock tables >&2; exit 3"], 30_000);
    expect(failed).toEqual({ exitCode: 3, output: "cannot lock tables\n", timedOut: false });

    // Only the tail of a long output.
    const long = await execInContainer(hooks, db(), ["sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done"], 30_000, { keep: 1024 });
    expect(long.exitCode).toBe(0);
    expect(Buffer.byteLength(long.output)).toBeLessThanOrEqual(1024);
    expect(long.output.endsWith("line-1998\nline-1999\n")).toBe(true);

    // Its deadline: Walle stops waiting, and says so.
    expect(await execInContainer(hooks, db(), ["sh", "-c", "echo started; sleep 30"], 2_000)).toEqual({
      output: "started\n",
      timedOut: true,
      error: "the command did not end within 2 s",
    });

    // A command the container does not have: no exit code, but the runtime's reason.
    const absent = await execInContainer(hooks, db(), ["pg_dump"], 30_000);
    expect(absent.exitCode).toBeUndefined();
    expect(absent.timedOut).toBe(false);
    expect(absent.error).toMatch(/executable file not found/);

    // Refused by the API server: a pod that does not exist, and a user with only get on pods/exec.
    const missing = await execInContainer(hooks, { ...db(), pod: "gone" }, ["true"], 30_000).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ApiError);
    expect(missing).toMatchObject({ code: 404 });
    // A WebSocket exec is a GET upgraded, and the API server asks for create on pods/exec as well (since 1.35).
    const getter = await clientForUser("exec-getter");
    const refused = await execInContainer(getter, db(), ["true"], 30_000).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 403 });
  }, 240_000);
});

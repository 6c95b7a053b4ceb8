// Kubeconfig files read through client-node's KubeConfig (lib/k8s/kubeconfig.ts): which files a KUBECONFIG list
// names, how files merge (as kubectl merges them), and what a request is authenticated with. No cluster and no
// processes: users are tokens, basic auth, impersonation, or a renewing auth provider registered in-process.
import { mkdtemp, writeFile } from "node:fs/promises";
import type https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Cluster, Context, User } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import {
  authenticationOf,
  coalesced,
  kubeconfigCredentials,
  kubeconfigFiles,
  loadKubeconfig,
  mergeKubeconfigs,
  resolveExecCommand,
  type KubeconfigParts,
} from "../../lib/k8s/kubeconfig.ts";

const CA_PEM = "-----BEGIN CERTIFICATE-----\nnot really a certificate\n-----END CERTIFICATE-----\n";

interface FileSpec {
  readonly current?: string;
  readonly clusters?: Record<string, Record<string, unknown>>;
  readonly users?: Record<string, Record<string, unknown>>;
  readonly contexts?: Record<string, { cluster: string; user: string }>;
}

async function kubeconfigFile(dir: string, name: string, spec: FileSpec): Promise<string> {
  const file = path.join(dir, name);
  const entries = <T>(o: Record<string, T> | undefined) => Object.entries(o ?? {});
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: entries(spec.clusters).map(([n, cluster]) => ({ name: n, cluster })),
    users: entries(spec.users).map(([n, user]) => ({ name: n, user })),
    contexts: entries(spec.contexts).map(([n, context]) => ({ name: n, context })),
    ...(spec.current ? { "current-context": spec.current } : {}),
  };
  await writeFile(file, JSON.stringify(config));
  return file;
}

const https1 = { server: "https://one.example:6443", "certificate-authority-data": Buffer.from(CA_PEM).toString("base64") };
const https2 = { server: "https://two.example:6443", "insecure-skip-tls-verify": true };

describe("KUBECONFIG's list of files", () => {
  it.each([
    [undefined, []],
    ["", []],
    ["/a", ["/a"]],
    ["/a:/b", ["/a", "/b"]],
    ["/a::/b:", ["/a", "/b"]],
    ["/a:/b:/a", ["/a", "/b"]],
  ])("%j names %j", (value, files) => {
    expect(kubeconfigFiles(value)).toEqual(files);
  });
});

describe("merging kubeconfig files as kubectl does", () => {
  const cluster = (name: string, server: string): Cluster => ({ name, server, skipTLSVerify: false });
  const user = (name: string, token: string): User => ({ name, token });
  const context = (name: string, c: string, u: string): Context => ({ name, cluster: c, user: u });
  const part = (p: Partial<KubeconfigParts>): KubeconfigParts => ({ clusters: [], users: [], contexts: [], currentContext: "", ...p });

  it("keeps the first file's entry of each name and the first current-context set", () => {
    const merged = mergeKubeconfigs([
      part({ clusters: [cluster("a", "https://first")], users: [user("u", "first")] }),
      part({ clusters: [cluster("a", "https://second"), cluster("b", "https://b")], users: [user("u", "second")], currentContext: "ctx-2" }),
      part({ contexts: [context("ctx-2", "a", "u"), context("ctx-3", "b", "u")], currentContext: "ctx-3" }),
    ]);
    expect(merged.clusters).toEqual([cluster("a", "https://first"), cluster("b", "https://b")]);
    expect(merged.users).toEqual([user("u", "first")]);
    expect(merged.contexts.map((c) => c.name)).toEqual(["ctx-2", "ctx-3"]);
    expect(merged.currentContext).toBe("ctx-2");
  });

  it("has no current context when no file sets one", () => {
    expect(mergeKubeconfigs([part({}), part({})]).currentContext).toBe("");
  });
});

describe("an exec plugin's command", () => {
  it.each([
    ["aws", "/home/me/.kube", "aws"],
    ["/usr/bin/gke-gcloud-auth-plugin", "/home/me/.kube", "/usr/bin/gke-gcloud-auth-plugin"],
    ["./bin/plugin", "/home/me/.kube", "/home/me/.kube/bin/plugin"],
    ["bin/plugin", "/home/me/.kube", "/home/me/.kube/bin/plugin"],
  ])("%s in a kubeconfig in %s runs %s", (command, dir, resolved) => {
    expect(resolveExecCommand(command, dir)).toBe(resolved);
  });
});

describe("what a request is authenticated with", () => {
  it.each<[string, https.RequestOptions, object]>([
    ["a bearer token", { headers: { Authorization: "Bearer t" } }, { headers: { authorization: "Bearer t" } }],
    ["basic auth", { auth: "alice:secret" }, { headers: { authorization: `Basic ${Buffer.from("alice:secret").toString("base64")}` } }],
    [
      "impersonation",
      { headers: { Authorization: "Bearer t", "Impersonate-User": "bob" } },
      { headers: { authorization: "Bearer t", "impersonate-user": "bob" } },
    ],
    ["an issued client certificate", { cert: "CERT", key: Buffer.from("KEY") }, { headers: {}, cert: "CERT", key: "KEY" }],
    ["nothing", {}, { headers: {} }],
  ])("%s", (_what, opts, expected) => {
    expect(authenticationOf(opts)).toEqual(expected);
  });
});

describe("coalesced calls", () => {
  it("share one call while it runs, then call again", async () => {
    let calls = 0;
    let release: (() => void) | undefined;
    const fn = coalesced(async () => {
      calls++;
      await new Promise<void>((r) => (release = r));
      return calls;
    });
    const [a, b] = [fn(), fn()];
    release?.();
    expect(await Promise.all([a, b])).toEqual([1, 1]);
    const c = fn();
    release?.();
    expect(await c).toBe(2);
  });

  it("let the next call retry after a failure", async () => {
    let calls = 0;
    const fn = coalesced(async () => {
      calls++;
      if (calls === 1) throw new Error("first fails");
      return calls;
    });
    await expect(fn()).rejects.toThrow("first fails");
    expect(await fn()).toBe(2);
  });
});

describe("loading kubeconfig files", () => {
  it("merges KUBECONFIG's files, skipping missing ones, and uses the first current-context", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "walle-kubeconfig-"));
    const first = await kubeconfigFile(dir, "first", {
      current: "one",
      clusters: { one: https1 },
      users: { me: { token: "first-token" } },
      contexts: { one: { cluster: "one", user: "me" } },
    });
    const second = await kubeconfigFile(dir, "second", {
      current: "two",
      clusters: { one: https2, two: https2 },
      users: { me: { token: "second-token" } },
      contexts: { two: { cluster: "two", user: "me" } },
    });
    const kc = await loadKubeconfig([path.join(dir, "missing"), first, second], { skipMissing: true });
    expect(kc.getCurrentContext()).toBe("one");
    expect(kc.getCluster("one")?.server).toBe("https://one.example:6443");
    const creds = await kubeconfigCredentials(kc);
    expect(creds).toMatchObject({ server: "https://one.example:6443", insecureSkipTlsVerify: false, headers: { authorization: "Bearer first-token" } });
    expect(creds.ca?.toString()).toBe(CA_PEM);
    expect(creds.authenticate).toBeUndefined();

    const other = await kubeconfigCredentials(await loadKubeconfig([first, second], { context: "two" }));
    expect(other).toMatchObject({ server: "https://two.example:6443", insecureSkipTlsVerify: true, headers: { authorization: "Bearer first-token" } });
  });

  it.each<[string, FileSpec, string | undefined, RegExp]>([
    [
      "no current-context",
      { clusters: { one: https1 }, users: { me: {} }, contexts: { one: { cluster: "one", user: "me" } } },
      undefined,
      /no current-context/,
    ],
    [
      "an unknown context",
      { current: "one", clusters: { one: https1 }, users: { me: {} }, contexts: { one: { cluster: "one", user: "me" } } },
      "nope",
      /no context nope/,
    ],
    ["a context's missing cluster", { current: "one", users: { me: {} }, contexts: { one: { cluster: "gone", user: "me" } } }, undefined, /names cluster gone/],
    [
      "a context's missing user",
      { current: "one", clusters: { one: https1 }, contexts: { one: { cluster: "one", user: "gone" } } },
      undefined,
      /names user gone/,
    ],
  ])("rejects %s", async (_what, spec, context, message) => {
    const dir = await mkdtemp(path.join(tmpdir(), "walle-kubeconfig-"));
    const file = await kubeconfigFile(dir, "config", spec);
    await expect(loadKubeconfig([file], context === undefined ? {} : { context })).rejects.toThrow(message);
  });

  it("rejects a list none of whose files exists", async () => {
    await expect(loadKubeconfig(["/nonexistent/a", "/nonexistent/b"], { skipMissing: true })).rejects.toThrow(/none of .* exists/);
  });

  it.each([
    ["a plain-http server", { server: "http://one.example:8080", "insecure-skip-tls-verify": true }, /is not https/],
    ["a proxy", { ...https1, "proxy-url": "http://proxy:3128" }, /proxy-url is not supported/],
  ])("refuses %s", async (_what, cluster, message) => {
    const dir = await mkdtemp(path.join(tmpdir(), "walle-kubeconfig-"));
    const file = await kubeconfigFile(dir, "config", {
      current: "c",
      clusters: { c: cluster },
      users: { me: { token: "t" } },
      contexts: { c: { cluster: "c", user: "me" } },
    });
    await expect(kubeconfigCredentials(await loadKubeconfig([file]))).rejects.toThrow(message);
  });
});

describe("a user whose credentials renew", () => {
  async function renewingKubeconfig() {
    const dir = await mkdtemp(path.join(tmpdir(), "walle-kubeconfig-"));
    const file = await kubeconfigFile(dir, "config", {
      current: "c",
      clusters: { c: https1 },
      users: { me: { "auth-provider": { name: "walle-test", config: {} } } },
      contexts: { c: { cluster: "c", user: "me" } },
    });
    const kc = await loadKubeconfig([file]);
    const provider = { issued: 0, fail: false };
    kc.addAuthenticator({
      isAuthProvider: (u) => u.authProvider?.name === "walle-test",
      async applyAuthentication(_user, opts) {
        if (provider.fail) throw new Error("the identity provider is down");
        provider.issued++;
        opts.headers = { ...opts.headers, Authorization: `Bearer token-${provider.issued}` };
      },
    });
    return { kc, provider };
  }

  it("is authenticated again for each request, so a renewed token is used", async () => {
    const { kc, provider } = await renewingKubeconfig();
    const creds = await kubeconfigCredentials(kc);
    expect(provider.issued).toBe(1);
    expect(creds.headers).toBeUndefined();
    expect((await creds.authenticate?.())?.headers).toEqual({ authorization: "Bearer token-2" });
    expect((await creds.authenticate?.())?.headers).toEqual({ authorization: "Bearer token-3" });
  });

  it("shares one authentication among concurrent requests", async () => {
    const { kc, provider } = await renewingKubeconfig();
    const creds = await kubeconfigCredentials(kc);
    const all = await Promise.all([creds.authenticate?.(), creds.authenticate?.(), creds.authenticate?.()]);
    expect(all.map((a) => a?.headers.authorization)).toEqual(["Bearer token-2", "Bearer token-2", "Bearer token-2"]);
    expect(provider.issued).toBe(2);
  });

  it("names the user when its credentials cannot be had", async () => {
    const { kc, provider } = await renewingKubeconfig();
    const creds = await kubeconfigCredentials(kc);
    provider.fail = true;
    await expect(creds.authenticate?.()).rejects.toThrow("kubeconfig user me: could not get credentials: the identity provider is down");
  });
});

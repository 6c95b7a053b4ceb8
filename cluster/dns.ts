// The local cluster's DNS: CoreDNS (toolchain/dns), in the node's network namespace as kube-proxy is, answering
// for cluster.local from the API server (its kubernetes plugin: Services, their EndpointSlices, namespaces). The
// kubelet names it as every pod's nameserver (clusterDNS), so `<service>.<namespace>.svc.cluster.local` and the
// short forms of the search path resolve in pods, as on any cluster. It serves nothing but cluster.local and the
// reverse zones: the node has no resolver beyond it, and the machine no network beyond its own.
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { isAlreadyExists, type RestClient } from "../lib/k8s/rest.ts";
import { startProcess, waitUntil, type Managed } from "./processes.ts";

/** The identity CoreDNS reads the API as, and the access its kubernetes plugin needs (and no more). */
export const DNS_USER = "system:coredns";

export function dnsRbac() {
  const meta = { name: DNS_USER, labels: { "app.kubernetes.io/part-of": "walle-local-cluster" } };
  return [
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: meta,
      rules: [
        { apiGroups: [""], resources: ["services", "namespaces"], verbs: ["list", "watch"] },
        { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"] },
      ],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: meta,
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: DNS_USER },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: DNS_USER }],
    },
  ];
}

export interface ClusterDnsOptions {
  readonly api: RestClient;
  readonly coredns: string;
  /** The node's network namespace, and its address there that CoreDNS listens on. */
  readonly netns: string;
  readonly address: string;
  /** A kubeconfig of DNS_USER whose current context reaches the API server from the node's namespace. */
  readonly kubeconfig: string;
  readonly dir: string;
  readonly logs: string;
}

/** Starts CoreDNS and resolves once its kubernetes plugin has synced with the API server (its ready plugin says so). */
export async function startClusterDns(o: ClusterDnsOptions): Promise<Managed> {
  for (const object of dnsRbac()) {
    const collection = `/apis/rbac.authorization.k8s.io/v1/${object.kind === "ClusterRole" ? "clusterroles" : "clusterrolebindings"}`;
    await o.api.create(collection, object).catch((e: unknown) => {
      if (!isAlreadyExists(e)) throw e;
    });
  }
  const corefile = path.join(o.dir, "Corefile");
  await writeFile(
    corefile,
    [
      ".:53 {",
      `    bind ${o.address}`,
      "    errors",
      `    ready ${o.address}:8181`,
      "    kubernetes cluster.local in-addr.arpa ip6.arpa {",
      `        kubeconfig ${o.kubeconfig} walle-local`,
      "        fallthrough in-addr.arpa ip6.arpa",
      "    }",
      "    loadbalance",
      "}",
      "",
    ].join("\n"),
  );
  const dns = startProcess("coredns", "nsenter", [`--net=/run/netns/${o.netns}`, "--", o.coredns, "-conf", corefile], path.join(o.logs, "coredns.log"));
  await waitUntil("CoreDNS ready", async () => (await fetch(`http://${o.address}:8181/ready`)).ok, 60_000, [dns]);
  return dns;
}

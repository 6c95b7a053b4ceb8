// The local cluster's own kubeconfig files (a client certificate or a token, as cluster/pki.ts writes them), read
// into credentials for the lean REST client without loading @kubernetes/client-node: the harness opens many
// clients, and Walle's functions read any kubeconfig through lib/k8s/kubeconfig.ts instead.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { Credentials } from "../lib/k8s/rest.ts";

interface KubeconfigFile {
  "current-context"?: string;
  contexts?: { name: string; context: { cluster: string; user: string; namespace?: string } }[];
  clusters?: { name: string; cluster: Record<string, string | boolean | undefined> }[];
  users?: { name: string; user: Record<string, string | undefined> }[];
}

function dataOrFile(data: unknown, file: unknown): Buffer | undefined {
  if (typeof data === "string") return Buffer.from(data, "base64");
  if (typeof file === "string") return readFileSync(file);
  return undefined;
}

/** Credentials of a kubeconfig the local cluster wrote: its current context, with certificates or a token. */
export function credentialsFromKubeconfig(file: string): Credentials {
  const cfg = parseYaml(readFileSync(file, "utf8")) as KubeconfigFile;
  const ctx = cfg.contexts?.find((c) => c.name === cfg["current-context"])?.context;
  const cluster = cfg.clusters?.find((c) => c.name === ctx?.cluster)?.cluster;
  const user = cfg.users?.find((u) => u.name === ctx?.user)?.user ?? {};
  if (!ctx || !cluster || typeof cluster.server !== "string") {
    throw new Error(`kubeconfig ${file}: no usable current-context, cluster or server`);
  }
  return {
    server: cluster.server,
    ca: dataOrFile(cluster["certificate-authority-data"], cluster["certificate-authority"]),
    cert: dataOrFile(user["client-certificate-data"], user["client-certificate"]),
    key: dataOrFile(user["client-key-data"], user["client-key"]),
    token: user.token,
    tokenFile: user.tokenFile,
    insecureSkipTlsVerify: cluster["insecure-skip-tls-verify"] === true,
  };
}

// A throwaway PKI for the local cluster, as envtest makes one: a CA, the API server's serving certificate,
// client certificates for any user, and the service-account signing key. openssl does the cryptography.
import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Pki {
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  readonly serviceAccountKey: string;
  readonly serviceAccountPub: string;
}

export interface CertPair {
  readonly cert: string;
  readonly key: string;
}

const ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

export function pkiAt(dir: string): Pki {
  return {
    dir,
    caCert: path.join(dir, "ca.crt"),
    caKey: path.join(dir, "ca.key"),
    serviceAccountKey: path.join(dir, "sa.key"),
    serviceAccountPub: path.join(dir, "sa.pub"),
  };
}

export async function createPki(dir: string): Promise<Pki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const pki = pkiAt(dir);
  await run("openssl", ["req", "-x509", ...ecKey, "-keyout", pki.caKey, "-out", pki.caCert, "-days", "30", "-subj", "/CN=walle-local-ca"]);
  await run("openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pki.serviceAccountKey]);
  await run("openssl", ["pkey", "-in", pki.serviceAccountKey, "-pubout", "-out", pki.serviceAccountPub]);
  return pki;
}

/** Subject of a certificate: the user is the CN and each group an O, as the API server reads them. */
function subject(user: string, groups: readonly string[]): string {
  const esc = (s: string) => s.replace(/[/\\=+,]/g, (c) => `\\${c}`);
  return `/CN=${esc(user)}${groups.map((g) => `/O=${esc(g)}`).join("")}`;
}

async function issue(pki: Pki, name: string, subj: string, extensions: string): Promise<CertPair> {
  const base = path.join(pki.dir, name.replace(/[^A-Za-z0-9_.-]/g, "_"));
  const pair = { cert: `${base}.crt`, key: `${base}.key` };
  const csr = `${base}.csr`;
  const ext = `${base}.ext`;
  await writeFile(ext, extensions);
  await run("openssl", ["req", "-new", ...ecKey, "-keyout", pair.key, "-out", csr, "-subj", subj]);
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    pki.caCert,
    "-CAkey",
    pki.caKey,
    "-CAcreateserial",
    "-days",
    "30",
    "-out",
    pair.cert,
    "-extfile",
    ext,
  ]);
  return pair;
}

export function issueServing(pki: Pki, name: string, ips: readonly string[], dnsNames: readonly string[]): Promise<CertPair> {
  const san = [...ips.map((ip) => `IP:${ip}`), ...dnsNames.map((d) => `DNS:${d}`)].join(",");
  return issue(
    pki,
    name,
    `/CN=${name}`,
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`,
  );
}

export function issueClient(pki: Pki, user: string, groups: readonly string[] = []): Promise<CertPair> {
  return issue(
    pki,
    `user-${user}-${groups.join("+")}`,
    subject(user, groups),
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
  );
}

/** A client-go exec credential plugin: a command that prints an ExecCredential (client.authentication.k8s.io/v1). */
export interface ExecPlugin {
  readonly command: string;
  readonly args?: readonly string[];
}

/** A kubeconfig file for a client certificate, a bearer token or an exec credential plugin, in the format kubectl reads. */
export async function writeKubeconfig(
  file: string,
  server: string,
  caCert: string,
  user: { name: string } & ({ cert: CertPair } | { token: string } | { exec: ExecPlugin }),
): Promise<string> {
  const ca = (await readFile(caCert)).toString("base64");
  const auth =
    "cert" in user
      ? {
          "client-certificate-data": (await readFile(user.cert.cert)).toString("base64"),
          "client-key-data": (await readFile(user.cert.key)).toString("base64"),
        }
      : "token" in user
        ? { token: user.token }
        : { exec: { apiVersion: "client.authentication.k8s.io/v1", command: user.exec.command, args: [...(user.exec.args ?? [])], interactiveMode: "Never" } };
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "walle-local", cluster: { server, "certificate-authority-data": ca } }],
    users: [{ name: user.name, user: auth }],
    contexts: [{ name: "walle-local", context: { cluster: "walle-local", user: user.name } }],
    "current-context": "walle-local",
  };
  await writeFile(file, JSON.stringify(config, null, 2), { mode: 0o600 });
  return file;
}

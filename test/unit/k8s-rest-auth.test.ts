// RestClient with credentials that renew (what kubeconfig.ts gives it for exec plugins and OIDC): each request is
// authenticated again, the kept-alive connection is reused, and a client certificate the source issues replaces
// the agents. Against an in-process HTTPS server on loopback, no cluster.
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { RestClient, type Authentication, type Credentials } from "../../lib/k8s/rest.ts";

// A self-signed P-256 certificate for 127.0.0.1 (CN walle-test, valid until 2126): the server's, and the one
// the credential source "issues" to the client.
const CERT = `-----BEGIN CERTIFICATE-----
MIIBkzCCATigAwIBAgIUb2IGXs+/vaR9KbjQ98Isl9khAlAwCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKd2FsbGUtdGVzdDAgFw0yNjEyMDEyMjI1MjdaGA8yMTI2MTEw
NzIyMjUyN1owFTETMBEGA1UEAwwKd2FsbGUtdGVzdDBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABMCUirX8/QzwveFgiC+dzZHL/0JJsFnD81DsqTXqHNEC78YVZosy
M/9d5zp5nzrq4Zj6l9x0r55coTP1n8yK0BKjZDBiMB0GA1UdDgQWBBQl5vUXmY5j
n8s70M+mG1MR2szLJzAfBgNVHSMEGDAWgBQl5vUXmY5jn8s70M+mG1MR2szLJzAP
BgNVHRMBAf8EBTADAQH/MA8GA1UdEQQIMAaHBH8AAAEwCgYIKoZIzj0EAwIDSQAw
RgIhAPwP3x/KgG4NBYS/aEl6fv1hsRiZx5E1yOEjPlraJQbVAiEA2boMrzj3jQ5a
VOPFucW7Olu2WZnGGMTJsUnTDufBhDg=
-----END CERTIFICATE-----
`;
const KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgvc3vtq/8HZjEkA5a
qv6TLiB7dX+gtgvmH9VQ6e9a0m6hRANCAATAlIq1/P0M8L3hYIgvnc2Ry/9CSbBZ
w/NQ7Kk16hzRAu/GFWaLMjP/Xec6eZ866uGY+pfcdK+eXKEz9Z/MitAS
-----END PRIVATE KEY-----
`;

interface Seen {
  readonly path: string;
  readonly authorization?: string;
  readonly impersonate?: string;
  /** The client certificate's CN, if the client presented one. */
  readonly clientCn?: string;
  /** The client's port: the same port means the same kept-alive connection. */
  readonly port: number;
}

const servers: https.Server[] = [];
const clients: RestClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) s.close();
});

async function recordingServer(): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = https.createServer({ cert: CERT, key: KEY, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const socket = req.socket as TLSSocket;
    const cn = socket.getPeerCertificate().subject?.CN;
    seen.push({
      path: (req.url ?? "").split("?")[0] ?? "",
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
      ...(typeof req.headers["impersonate-user"] === "string" ? { impersonate: req.headers["impersonate-user"] } : {}),
      ...(typeof cn === "string" ? { clientCn: cn } : {}),
      port: socket.remotePort ?? 0,
    });
    res.setHeader("content-type", "application/json");
    if ((req.url ?? "").includes("watch=1")) res.end(`${JSON.stringify({ type: "ADDED", object: { n: seen.length } })}\n`);
    else res.end(JSON.stringify({ n: seen.length }));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

function client(creds: Credentials): RestClient {
  const c = new RestClient(creds);
  clients.push(c);
  return c;
}

describe("a RestClient whose credentials renew", () => {
  it("authenticates each request and watch anew, over one kept-alive connection", async () => {
    const { url, seen } = await recordingServer();
    let issued = 0;
    const api = client({
      server: url,
      ca: Buffer.from(CERT),
      authenticate: async (): Promise<Authentication> => ({ headers: { Authorization: `Bearer token-${++issued}` } }),
    });
    await api.get("/api/v1/namespaces");
    await api.get("/api/v1/namespaces");
    const events: unknown[] = [];
    await api.watch("/api/v1/pods", "1", (e) => events.push(e.object));
    expect(seen.map((s) => s.authorization)).toEqual(["Bearer token-1", "Bearer token-2", "Bearer token-3"]);
    expect(seen[1]?.port).toBe(seen[0]?.port);
    expect(events).toEqual([{ n: 3 }]);
    expect(api.requests).toBe(3);
  });

  it("moves to a client certificate the source issues, with new agents", async () => {
    const { url, seen } = await recordingServer();
    let cert: Pick<Authentication, "cert" | "key"> = {};
    const api = client({ server: url, ca: Buffer.from(CERT), authenticate: async () => ({ headers: {}, ...cert }) });
    await api.get("/first");
    const agent = api.agent;
    cert = { cert: CERT, key: KEY };
    await api.get("/second");
    await api.get("/third");
    expect(seen.map((s) => [s.path, s.clientCn])).toEqual([
      ["/first", undefined],
      ["/second", "walle-test"],
      ["/third", "walle-test"],
    ]);
    expect(api.agent).not.toBe(agent);
    expect(seen[2]?.port).toBe(seen[1]?.port);
  });

  it("fails a request whose authentication fails, before sending it", async () => {
    const { url, seen } = await recordingServer();
    const api = client({ server: url, ca: Buffer.from(CERT), authenticate: () => Promise.reject(new Error("the plugin failed")) });
    await expect(api.get("/x")).rejects.toThrow("the plugin failed");
    expect(seen).toEqual([]);
  });
});

describe("a RestClient with fixed headers", () => {
  it("sends them with every request", async () => {
    const { url, seen } = await recordingServer();
    const api = client({ server: url, ca: Buffer.from(CERT), headers: { Authorization: "Basic YTpi", "Impersonate-User": "bob" } });
    await api.get("/x");
    expect(seen).toMatchObject([{ authorization: "Basic YTpi", impersonate: "bob" }]);
  });
});

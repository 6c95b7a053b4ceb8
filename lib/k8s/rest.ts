// A thin REST client for the Kubernetes API: JSON over HTTPS with the credentials of a kubeconfig file or of
// the pod's service account, typed errors that carry the API status code, and list+watch streams.
// It is deliberately small: Walle's functions scale from zero, so start-up time and memory matter more than
// the breadth of a generated client. Kubeconfig files with any kind of user (exec plugins, OIDC) go through
// kubeconfig.ts, which only authenticates the requests this client sends.
import { readFileSync } from "node:fs";
import https from "node:https";

export interface Credentials {
  readonly server: string;
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly token?: string;
  readonly tokenFile?: string;
  readonly insecureSkipTlsVerify?: boolean;
  /** The name to verify the server's certificate against, when it is not the server URL's host. */
  readonly tlsServerName?: string;
  /** Headers sent with every request (a kubeconfig's basic auth or impersonation). */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * Authentication worked out again for each request, for credentials that expire and are renewed (a
   * kubeconfig's exec plugin or OIDC provider). Calls may overlap; the source caches what it can.
   */
  readonly authenticate?: () => Promise<Authentication>;
}

/** What a renewing credential source gives for one request. */
export interface Authentication {
  /** Headers to send, such as Authorization. */
  readonly headers: Readonly<Record<string, string>>;
  /** A client certificate and key (PEM) the source issued, for sources that issue them (some exec plugins). */
  readonly cert?: string;
  readonly key?: string;
}

/** A Kubernetes `Status` failure: `code` is the HTTP status, `reason` the API's machine-readable reason. */
export class ApiError extends Error {
  override name = "ApiError";
  readonly code: number;
  readonly reason: string;
  readonly details?: unknown;
  constructor(code: number, reason: string, message: string, details?: unknown) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.details = details;
  }
}

export const isNotFound = (e: unknown): boolean => e instanceof ApiError && e.code === 404;
export const isConflict = (e: unknown): boolean => e instanceof ApiError && e.code === 409;

/**
 * A step whose conflict means another instance wrote first (the status write's resourceVersion precondition):
 * undefined then, any other failure as it was.
 */
export function unlessConflict<T>(work: Promise<T>): Promise<T | undefined> {
  return work.catch((e: unknown) => {
    if (isConflict(e)) return undefined;
    throw e;
  });
}
export const isAlreadyExists = (e: unknown): boolean => e instanceof ApiError && e.code === 409 && e.reason === "AlreadyExists";

/** A create refused because its namespace is being deleted (the NamespaceLifecycle admission's cause). */
export const isNamespaceTerminating = (e: unknown): boolean =>
  e instanceof ApiError &&
  e.code === 403 &&
  Array.isArray((e.details as { causes?: unknown } | undefined)?.causes) &&
  (e.details as { causes: { reason?: string }[] }).causes.some((c) => c.reason === "NamespaceTerminating");

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount";

/** The pod's own service account, as client-go's rest.InClusterConfig finds it. */
export function inClusterCredentials(env: NodeJS.ProcessEnv = process.env): Credentials {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new Error("not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset");
  const h = host.includes(":") ? `[${host}]` : host;
  return { server: `https://${h}:${port}`, ca: readFileSync(`${saDir}/ca.crt`), tokenFile: `${saDir}/token` };
}

export type PatchType = "merge" | "json" | "strategic" | "apply";
const patchContentType: Record<PatchType, string> = {
  merge: "application/merge-patch+json",
  json: "application/json-patch+json",
  strategic: "application/strategic-merge-patch+json",
  apply: "application/apply-patch+yaml",
};

export interface RequestOptions {
  readonly body?: unknown;
  readonly contentType?: string;
  readonly accept?: string;
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>;
  readonly timeoutMs?: number;
}

export interface WatchEvent<T> {
  readonly type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  readonly object: T;
}

interface Tls {
  readonly ca?: Buffer;
  readonly cert?: Buffer | string;
  readonly key?: Buffer | string;
  readonly servername?: string;
  readonly rejectUnauthorized: boolean;
}

/** Stops an agent keeping connections alive: requests in flight finish, then their sockets close. */
function retire(agent: https.Agent): void {
  agent.on("free", (socket: { destroy(): void }) => socket.destroy());
  for (const sockets of Object.values(agent.freeSockets)) for (const s of sockets ?? []) s.destroy();
}

export class RestClient {
  #agent: https.Agent;
  #watchAgent: https.Agent;
  #tls: Tls;
  /** The client certificate and key in use, as PEM text, to tell a newly issued one from it. */
  #identity: { readonly cert?: string; readonly key?: string };
  readonly base: URL;
  /** Counts requests, so benchmarks and tests can measure how many API calls a piece of work made. */
  requests = 0;

  readonly creds: Credentials;

  constructor(creds: Credentials) {
    this.creds = creds;
    this.base = new URL(creds.server);
    this.#tls = {
      ca: creds.ca,
      cert: creds.cert,
      key: creds.key,
      rejectUnauthorized: !creds.insecureSkipTlsVerify,
      ...(creds.tlsServerName ? { servername: creds.tlsServerName } : {}),
    };
    this.#identity = { cert: creds.cert?.toString("utf8"), key: creds.key?.toString("utf8") };
    this.#agent = new https.Agent({ keepAlive: true, maxSockets: 32, ...this.#tls });
    this.#watchAgent = new https.Agent({ keepAlive: false, ...this.#tls });
  }

  /** Kept alive and shared by all ordinary requests. */
  get agent(): https.Agent {
    return this.#agent;
  }

  /** Watches hold their connection for minutes: they get their own, so they never starve ordinary requests. */
  get watchAgent(): https.Agent {
    return this.#watchAgent;
  }

  private headers(opts: RequestOptions): Record<string, string> {
    const h: Record<string, string> = { accept: opts.accept ?? "application/json" };
    const token = this.creds.tokenFile ? readFileSync(this.creds.tokenFile, "utf8").trim() : this.creds.token;
    if (token) h.authorization = `Bearer ${token}`;
    if (this.creds.headers) for (const [k, v] of Object.entries(this.creds.headers)) h[k.toLowerCase()] = v;
    if (opts.body !== undefined) h["content-type"] = opts.contentType ?? "application/json";
    return h;
  }

  /** `headers` plus what `creds.authenticate` gives now; a newly issued client certificate replaces the agents. */
  private async authenticated(authenticate: () => Promise<Authentication>, headers: Record<string, string>): Promise<Record<string, string>> {
    const auth = await authenticate();
    if (auth.cert !== undefined && auth.key !== undefined && (auth.cert !== this.#identity.cert || auth.key !== this.#identity.key)) {
      this.#identity = { cert: auth.cert, key: auth.key };
      this.#tls = { ...this.#tls, cert: auth.cert, key: auth.key };
      retire(this.#agent);
      this.#agent = new https.Agent({ keepAlive: true, maxSockets: 32, ...this.#tls });
      this.#watchAgent = new https.Agent({ keepAlive: false, ...this.#tls });
    }
    for (const [k, v] of Object.entries(auth.headers)) headers[k.toLowerCase()] = v;
    return headers;
  }

  private url(path: string, query: RequestOptions["query"]): URL {
    const u = new URL(path, this.base);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
    return u;
  }

  /** One API request. Resolves with the decoded JSON body; rejects with ApiError on a non-2xx status. */
  request<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    this.requests++;
    const body = opts.body === undefined ? undefined : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
    const headers = this.headers(opts);
    if (body !== undefined) headers["content-length"] = String(Buffer.byteLength(body));
    const { authenticate } = this.creds;
    if (!authenticate) return this.send<T>(method, path, opts, headers, body);
    return this.authenticated(authenticate, headers).then((h) => this.send<T>(method, path, opts, h, body));
  }

  private send<T>(method: string, path: string, opts: RequestOptions, headers: Record<string, string>, body: string | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const req = https.request(this.url(path, opts.query), { method, agent: this.#agent, headers, timeout: opts.timeoutMs ?? 30_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = res.statusCode ?? 0;
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          const isJson = (res.headers["content-type"] ?? "").startsWith("application/json");
          if (status >= 200 && status < 300) return resolve((isJson ? json : text) as T);
          const s = (json ?? {}) as { reason?: string; message?: string; details?: unknown };
          reject(new ApiError(status, s.reason ?? "Unknown", `${method} ${path}: ${status} ${s.message ?? text.slice(0, 500)}`, s.details));
        });
        res.on("error", reject);
      });
      // A code like a socket error's, so callers (the reconcile shell answers 503) treat it as transient.
      req.on("timeout", () => req.destroy(Object.assign(new Error(`${method} ${path}: timed out`), { code: "ETIMEDOUT" })));
      req.on("error", reject);
      if (body !== undefined) req.write(body);
      req.end();
    });
  }

  get<T>(path: string, query?: RequestOptions["query"]): Promise<T> {
    return this.request<T>("GET", path, { query });
  }
  create<T>(path: string, body: unknown, query?: RequestOptions["query"]): Promise<T> {
    return this.request<T>("POST", path, { body, query });
  }
  replace<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>("PUT", path, { body });
  }
  patch<T>(path: string, body: unknown, type: PatchType = "merge", query?: RequestOptions["query"]): Promise<T> {
    return this.request<T>("PATCH", path, { body, contentType: patchContentType[type], query });
  }
  delete<T>(path: string, body?: unknown, query?: RequestOptions["query"]): Promise<T> {
    return this.request<T>("DELETE", path, { body, query });
  }

  /**
   * A watch stream from `resourceVersion`. Calls `onEvent` for each event and resolves when the server ends
   * the stream (watches time out); rejects on a transport error. `signal` aborts it.
   */
  watch<T>(
    path: string,
    resourceVersion: string,
    onEvent: (e: WatchEvent<T>) => void,
    signal?: AbortSignal,
    query: RequestOptions["query"] = {},
  ): Promise<void> {
    this.requests++;
    const { authenticate } = this.creds;
    if (!authenticate) return this.stream(path, resourceVersion, onEvent, signal, query, this.headers({}));
    return this.authenticated(authenticate, this.headers({})).then((h) => this.stream(path, resourceVersion, onEvent, signal, query, h));
  }

  /**
   * What a connection of its own (an exec's WebSocket) needs: its URL, the headers a request would send now, and
   * the agent of long-lived connections (its TLS: the CA, the client certificate).
   */
  async connection(path: string, query: RequestOptions["query"] = {}): Promise<{ url: URL; headers: Record<string, string>; agent: https.Agent }> {
    this.requests++;
    const { authenticate } = this.creds;
    // No Accept: an upgraded stream is no JSON document, and the API server refuses one that asks for it (406).
    const { accept: _, ...base } = this.headers({});
    const headers = authenticate ? await this.authenticated(authenticate, base) : base;
    return { url: this.url(path, query), headers, agent: this.#watchAgent };
  }

  private stream<T>(
    path: string,
    resourceVersion: string,
    onEvent: (e: WatchEvent<T>) => void,
    signal: AbortSignal | undefined,
    query: RequestOptions["query"],
    headers: Record<string, string>,
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const req = https.request(
        this.url(path, { ...query, watch: 1, resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 300 }),
        { method: "GET", agent: this.#watchAgent, headers, signal },
        (res) => {
          if ((res.statusCode ?? 0) >= 300) {
            res.resume();
            return reject(new ApiError(res.statusCode ?? 0, "WatchFailed", `watch ${path}: ${res.statusCode}`));
          }
          let buffered = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            buffered += chunk;
            let nl: number;
            while ((nl = buffered.indexOf("\n")) >= 0) {
              const line = buffered.slice(0, nl).trim();
              buffered = buffered.slice(nl + 1);
              if (line) onEvent(JSON.parse(line) as WatchEvent<T>);
            }
          });
          res.on("end", () => resolve());
          res.on("error", reject);
        },
      );
      req.on("error", (e) => (signal?.aborted ? resolve() : reject(e)));
      req.end();
    });
  }

  close(): void {
    this.#agent.destroy();
    this.#watchAgent.destroy();
  }
}

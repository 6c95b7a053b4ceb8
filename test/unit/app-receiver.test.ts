// The reconcile function's HTTP shell against a recording fake of its handler: which requests reach the handler,
// and which status each outcome becomes (docs/architecture.md, Events). No cluster: the handler is ours, not Kubernetes.
import type { CloudEventV1 } from "cloudevents";
import http from "node:http";
import type { Logger } from "pino";
import request from "supertest";
import { afterEach, describe, expect, it } from "vitest";
import { ApiError } from "../../lib/k8s/rest.ts";
import { createLogger } from "../../lib/log.ts";
import { BadEventError, EventType, ForbiddenError, UnauthenticatedError, type Credentials, type Handle, type HandlerResult } from "../../lib/app/events.ts";
import { createReceiver, type Receiver, type ReceiverOptions } from "../../lib/app/receiver.ts";
import { trickle } from "../support/slow-loris.ts";

// ---- Fixtures

/** A logger whose lines the test reads back. */
function capturedLog(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    function: "walle-reconcile",
    level: "debug",
    destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  });
  return { log, lines };
}

interface Call {
  readonly event: CloudEventV1<unknown>;
  readonly log: Logger;
  credentials: Credentials;
}

/** A fake of our handler that records each event and answers with `respond`. */
function recordingHandler(respond: (event: CloudEventV1<unknown>) => Promise<HandlerResult> = async () => ({ status: 200, body: { ok: true } })) {
  const calls: Call[] = [];
  const handle: Handle = async ({ log, credentials }, event) => {
    calls.push({ event, log, credentials });
    return respond(event);
  };
  return { handle, calls };
}

function setup(options: Partial<ReceiverOptions> & { respond?: (event: CloudEventV1<unknown>) => Promise<HandlerResult> } = {}) {
  const { handle, calls } = recordingHandler(options.respond);
  const { log, lines } = capturedLog();
  const server = createReceiver({ handle, log, ...options });
  return { server, calls, lines, app: server.app };
}

const backupJob = {
  apiVersion: "ros.io/v1",
  kind: "BackupJob",
  metadata: { name: "data-backup", namespace: "shop", resourceVersion: "42" },
  spec: { sourcePvc: "data", repository: { name: "restic" } },
};

/** Headers of a binary-mode event as Knative's ApiServerSource adapter sends it. */
function apiServerHeaders(overrides: Record<string, string | undefined> = {}): Record<string, string> {
  const headers: Record<string, string | undefined> = {
    "content-type": "application/json",
    "ce-specversion": "1.0",
    "ce-id": "5b3b0b7e-1f7e-4a8e-9f43-2b1c3d4e5f60",
    "ce-source": "https://10.96.0.1:443",
    "ce-type": EventType.ResourceUpdate,
    "ce-subject": "/apis/ros.io/v1/namespaces/shop/backupjobs/data-backup",
    "ce-time": "2026-01-02T03:04:05.123456789Z",
    "ce-kind": "BackupJob",
    "ce-apiversion": "ros.io/v1",
    "ce-name": "data-backup",
    "ce-namespace": "shop",
    ...overrides,
  };
  return Object.fromEntries(Object.entries(headers).filter((e): e is [string, string] => e[1] !== undefined));
}

function structured(attributes: Record<string, unknown>): string {
  return JSON.stringify({ specversion: "1.0", id: "r-1", source: "curl", type: EventType.Resync, ...attributes });
}

/** POSTs `count` chunks with chunked transfer encoding (no Content-Length), as a streaming client does. */
function streamChunked(port: number, headers: Record<string, string>, count: number, chunk: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path: "/", headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    for (let i = 0; i < count; i++) req.write(chunk);
    req.end();
  });
}

// supertest takes a request listener or the URL of a listening server.
type App = Parameters<typeof request>[0];

function postBinary(app: App, headers: Record<string, string>, body: string = JSON.stringify(backupJob)) {
  return request(app).post("/").set(headers).send(body);
}

function postStructured(app: App, body: string, contentType = "application/cloudevents+json") {
  return request(app).post("/").set("content-type", contentType).send(body);
}

// ---- Accepted events

describe("accepted CloudEvents", () => {
  it("hands a binary-mode ApiServerSource event to the handler, with its data and extensions", async () => {
    const { app, calls } = setup({ respond: async () => ({ status: 202, body: { created: ["x"] } }) });
    const res = await postBinary(app, apiServerHeaders());
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ created: ["x"] });
    expect(calls).toHaveLength(1);
    const event = calls[0]!.event;
    expect(event).toMatchObject({
      specversion: "1.0",
      id: "5b3b0b7e-1f7e-4a8e-9f43-2b1c3d4e5f60",
      type: EventType.ResourceUpdate,
      source: "https://10.96.0.1:443",
      subject: "/apis/ros.io/v1/namespaces/shop/backupjobs/data-backup",
      kind: "BackupJob",
      apiversion: "ros.io/v1",
      name: "data-backup",
      namespace: "shop",
    });
    expect(event.data).toEqual(backupJob);
  });

  it("parses JSON data whatever the charset parameter's spelling", async () => {
    const { app, calls } = setup();
    const res = await postBinary(app, apiServerHeaders({ "content-type": "application/json;charset=UTF-8" }));
    expect(res.status).toBe(200);
    expect(calls[0]?.event.data).toEqual(backupJob);
  });

  it("accepts a cluster-scoped object's event, whose namespace extension is empty", async () => {
    const { app, calls } = setup();
    const headers = apiServerHeaders({
      "ce-kind": "BackupSet",
      "ce-name": "nightly-1",
      "ce-namespace": "",
      "ce-subject": "/apis/ros.io/v1/namespaces//backupsets/nightly-1",
    });
    const res = await postBinary(app, headers, JSON.stringify({ apiVersion: "ros.io/v1", kind: "BackupSet", metadata: { name: "nightly-1" } }));
    expect(res.status).toBe(200);
    expect(calls[0]?.event.namespace).toBe("");
  });

  it("hands a structured-mode event to the handler", async () => {
    const { app, calls } = setup();
    const body = structured({ type: EventType.BackupRequested, data: { namespace: "shop", pvc: "data" } });
    const res = await postStructured(app, body, "application/cloudevents+json; charset=utf-8");
    expect(res.status).toBe(200);
    expect(calls[0]?.event).toMatchObject({ id: "r-1", type: EventType.BackupRequested, data: { namespace: "shop", pvc: "data" } });
  });

  it("accepts an event without data", async () => {
    const { app, calls } = setup({ respond: async () => ({ status: 204 }) });
    const res = await request(app)
      .post("/")
      .set(apiServerHeaders({ "ce-type": EventType.Resync, "content-type": undefined }));
    expect(res.status).toBe(204);
    expect(res.text).toBe("");
    expect(calls[0]?.event.data).toBeUndefined();
  });

  it("gives the handler a child logger that names the event and its object", async () => {
    const { app, calls, lines } = setup();
    await postBinary(app, apiServerHeaders());
    calls[0]!.log.info("Observed BackupJob");
    const line = lines.find((l) => l.msg === "Observed BackupJob");
    expect(line).toMatchObject({
      function: "walle-reconcile",
      ceId: "5b3b0b7e-1f7e-4a8e-9f43-2b1c3d4e5f60",
      ceType: EventType.ResourceUpdate,
      namespace: "shop",
      name: "data-backup",
    });
  });

  it("names the object from the subject when the extensions are absent", async () => {
    const { app, lines } = setup();
    await postBinary(app, apiServerHeaders({ "ce-name": undefined, "ce-namespace": undefined, "ce-subject": "/apis/batch/v1/namespaces/shop/jobs/worker-1" }));
    expect(lines.find((l) => l.msg === "Handled CloudEvent")).toMatchObject({ namespace: "shop", name: "worker-1" });
  });

  it("logs one line per event with its status and duration", async () => {
    const { app, lines } = setup();
    await postBinary(app, apiServerHeaders());
    const handled = lines.filter((l) => l.msg === "Handled CloudEvent");
    expect(handled).toHaveLength(1);
    expect(handled[0]).toMatchObject({ level: "info", status: 200, ceId: "5b3b0b7e-1f7e-4a8e-9f43-2b1c3d4e5f60" });
    expect(typeof handled[0]?.durationMs).toBe("number");
  });
});

// ---- Malformed events

const oneKiB = 1024;

interface MalformedCase {
  readonly name: string;
  readonly send: (app: App) => request.Test;
  /** A word the error or one of its issues must contain, so the caller learns what was wrong. */
  readonly names: RegExp;
}

const malformed: MalformedCase[] = [
  { name: "binary mode without ce-id", send: (app) => postBinary(app, apiServerHeaders({ "ce-id": undefined })), names: /ce-id/ },
  { name: "binary mode with an empty ce-id", send: (app) => postBinary(app, apiServerHeaders({ "ce-id": "" })), names: /ce-id/ },
  {
    name: "structured mode without id",
    send: (app) => postStructured(app, JSON.stringify({ specversion: "1.0", source: "curl", type: EventType.Resync })),
    names: /id is required/,
  },
  { name: "binary mode with specversion 0.3", send: (app) => postBinary(app, apiServerHeaders({ "ce-specversion": "0.3" })), names: /specversion/ },
  { name: "binary mode without specversion", send: (app) => postBinary(app, apiServerHeaders({ "ce-specversion": undefined })), names: /specversion/ },
  { name: "structured mode with specversion 0.2", send: (app) => postStructured(app, structured({ specversion: "0.2" })), names: /specversion/ },
  { name: "binary mode without source", send: (app) => postBinary(app, apiServerHeaders({ "ce-source": undefined })), names: /ce-source/ },
  {
    name: "structured mode without type",
    send: (app) => postStructured(app, JSON.stringify({ specversion: "1.0", id: "1", source: "curl" })),
    names: /type is required/,
  },
  { name: "an unparseable time", send: (app) => postBinary(app, apiServerHeaders({ "ce-time": "yesterday" })), names: /time/ },
  { name: "bad JSON in structured mode", send: (app) => postStructured(app, '{"specversion":"1.0","id":'), names: /not valid JSON/ },
  { name: "a JSON array in structured mode", send: (app) => postStructured(app, "[1,2]"), names: /JSON object/ },
  { name: "an empty structured-mode body", send: (app) => postStructured(app, ""), names: /not valid JSON/ },
  { name: "bad JSON data in binary mode", send: (app) => postBinary(app, apiServerHeaders(), '{"metadata":'), names: /data is not valid JSON/ },
  { name: "an unknown type", send: (app) => postBinary(app, apiServerHeaders({ "ce-type": "com.example.unknown" })), names: /com\.example\.unknown/ },
  { name: "an extension name the spec forbids", send: (app) => postStructured(app, structured({ "bad-name": "x" })), names: /bad-name/ },
  { name: "batch mode", send: (app) => postStructured(app, `[${structured({})}]`, "application/cloudevents-batch+json"), names: /[Bb]atch/ },
  { name: "a structured format other than JSON", send: (app) => postStructured(app, "<event/>", "application/cloudevents+xml"), names: /cloudevents\+xml/ },
  { name: "no CloudEvent at all", send: (app) => request(app).post("/").set("content-type", "application/json").send("{}"), names: /ce-id/ },
];

describe("malformed CloudEvents get 400 with a JSON error, and never reach the handler", () => {
  it.each(malformed)("$name", async ({ send, names }) => {
    const { app, calls, lines } = setup({ maxBodyBytes: oneKiB });
    const res = await send(app);
    expect(res.status).toBe(400);
    expect(res.type).toBe("application/json");
    const body = res.body as { error: unknown; issues?: { path: string; message: string }[] };
    expect(typeof body.error).toBe("string");
    expect(JSON.stringify(body)).toMatch(names);
    expect(calls).toHaveLength(0);
    expect(lines.filter((l) => l.msg === "Rejected malformed CloudEvent")).toHaveLength(1);
  });

  it("answers 413 for a body over the limit, and closes the connection rather than read the rest", async () => {
    const { app, calls } = setup({ maxBodyBytes: oneKiB });
    const res = await postBinary(app, apiServerHeaders(), JSON.stringify({ ...backupJob, padding: "x".repeat(2 * oneKiB) }));
    expect(res.status).toBe(413);
    expect(res.headers.connection).toBe("close");
    expect((res.body as { error: string }).error).toMatch(/larger than the limit of 1024 bytes/);
    expect(calls).toHaveLength(0);
  });

  it("cuts off a sender that trickles its body (a slow-loris) with 408 at the request deadline, before the handler", async () => {
    const { server, calls } = setup({ requestTimeoutMs: 300 });
    const { port } = await server.listen(0, "127.0.0.1");
    try {
      // One byte a tenth of a second: never the whole body, and the connection never idle.
      const reply = await trickle(
        port,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nce-specversion: 1.0\r\nce-id: 1\r\nce-source: /s\r\nce-type: io.ros.walle.resync\r\nContent-Length: 100000",
        100,
      );
      expect(reply).toMatch(/^HTTP\/1\.1 408 /);
      expect(calls).toHaveLength(0);
    } finally {
      await server.close();
    }
  });

  it("limits the body to 1 MiB by default", async () => {
    const { app, calls } = setup();
    const res = await postBinary(app, apiServerHeaders(), JSON.stringify({ ...backupJob, padding: "x".repeat(1024 * 1024) }));
    expect(res.status).toBe(413);
    expect((res.body as { error: string }).error).toMatch(/1048576 bytes/);
    expect(calls).toHaveLength(0);
  });

  it("limits a body streamed without a Content-Length too", async () => {
    const { server, calls } = setup({ maxBodyBytes: oneKiB });
    const { port } = await server.listen(0, "127.0.0.1");
    try {
      const res = await streamChunked(port, apiServerHeaders(), 64, "x".repeat(256));
      expect(res.status).toBe(413);
      expect(res.body).toMatch(/larger than the limit/);
      expect(calls).toHaveLength(0);
    } finally {
      await server.close();
    }
  });

  it("names each problem of the envelope as an issue", async () => {
    const { app } = setup();
    const res = await postBinary(app, apiServerHeaders({ "ce-specversion": "0.3", "ce-source": undefined }));
    expect(res.status).toBe(400);
    expect((res.body as { issues: unknown }).issues).toEqual([
      { path: "ce-specversion", message: 'specversion must be "1.0"' },
      { path: "ce-source", message: "source is required" },
    ]);
  });
});

// ---- Credentials

describe("the sender's credentials", () => {
  const token = "s3cret-trigger-token";
  const trigger = (type: string) => structured({ type, data: { namespace: "shop", pvc: "data" } });

  it("are handed to the handler as they came: none, the static trigger token, or a bearer token for Kubernetes to review", async () => {
    const { app, calls } = setup({ triggerToken: token });
    await postStructured(app, trigger(EventType.BackupRequested));
    await postStructured(app, trigger(EventType.BackupRequested)).set("authorization", `Bearer ${token}`);
    await postStructured(app, trigger(EventType.BackupRequested)).set("authorization", "Bearer eyJhbGciOi.k8s.token");
    // A near miss of the static token is just another bearer token: Kubernetes will not know it either.
    await postStructured(app, trigger(EventType.BackupRequested)).set("authorization", `Bearer ${token}x`);
    await postStructured(app, trigger(EventType.BackupRequested)).set("authorization", `Basic ${token}`);
    expect(calls.map((c) => c.credentials)).toEqual([
      { staticToken: false },
      { staticToken: true },
      { staticToken: false, bearer: "eyJhbGciOi.k8s.token" },
      { staticToken: false, bearer: `${token}x` },
      { staticToken: false },
    ]);
  });

  it("without a static token configured, even its value is only a bearer token", async () => {
    const { app, calls } = setup();
    await postStructured(app, trigger(EventType.BackupRequested)).set("authorization", `Bearer ${token}`);
    expect(calls.map((c) => c.credentials)).toEqual([{ staticToken: false, bearer: token }]);
  });

  it("answer 401 with a Bearer challenge when the handler finds no valid token, and 403 when RBAC refuses", async () => {
    const refusals = [
      new UnauthenticatedError("A forced backup needs a Kubernetes bearer token"),
      new ForbiddenError("system:serviceaccount:shop:ci may not make this forced backup"),
    ];
    const { app } = setup({ respond: async () => Promise.reject(refusals.shift()) });
    const unauthenticated = await postStructured(app, trigger(EventType.BackupRequested));
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.headers["www-authenticate"]).toMatch(/^Bearer/);
    expect(unauthenticated.body).toEqual({ error: "A forced backup needs a Kubernetes bearer token" });
    const forbidden = await postStructured(app, trigger(EventType.BackupRequested));
    expect(forbidden.status).toBe(403);
    expect(forbidden.body).toEqual({ error: "system:serviceaccount:shop:ci may not make this forced backup" });
  });

  it("never appear in a log line", async () => {
    const { app, lines } = setup({ triggerToken: token, respond: async () => Promise.reject(new UnauthenticatedError("no")) });
    await postStructured(app, trigger(EventType.BackupRequested)).set("authorization", "Bearer wrong-guess");
    await postStructured(app, trigger(EventType.BackupRequested)).set("authorization", `Bearer ${token}`);
    expect(lines.length).toBeGreaterThan(0);
    expect(JSON.stringify(lines)).not.toMatch(/s3cret|wrong-guess/);
  });
});

// ---- Handler outcomes

const connectionRefused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6443"), { code: "ECONNREFUSED" });

interface ErrorCase {
  readonly name: string;
  readonly error: unknown;
  readonly status: number;
  readonly names: RegExp;
  /** The log level, when not error for a 500 and warn otherwise. */
  readonly level?: string;
}

const errorCases: ErrorCase[] = [
  { name: "a BadEventError", error: new BadEventError("data.pvc is required", [{ path: "pvc", message: "is required" }]), status: 400, names: /pvc/ },
  { name: "an API server 503", error: new ApiError(503, "ServiceUnavailable", "GET /apis/ros.io/v1: 503"), status: 503, names: /unavailable/ },
  { name: "an API server 500", error: new ApiError(500, "InternalError", "etcdserver: request timed out"), status: 503, names: /etcdserver/ },
  { name: "an API server 504", error: new ApiError(504, "Timeout", "the server was unable to return a response in time"), status: 503, names: /in time/ },
  { name: "throttling (429)", error: new ApiError(429, "TooManyRequests", "too many requests"), status: 503, names: /too many/ },
  {
    name: "a write conflict (409 Conflict)",
    error: new ApiError(409, "Conflict", "the object has been modified"),
    status: 503,
    names: /Another writer changed the object first.*modified/,
    level: "info",
  },
  { name: "a refused connection", error: connectionRefused, status: 503, names: /ECONNREFUSED/ },
  {
    name: "a refused connection wrapped with context",
    error: new Error("get BackupJob shop/data-backup", { cause: connectionRefused }),
    status: 503,
    names: /get BackupJob.*ECONNREFUSED/,
  },
  { name: "an abort by timeout", error: new DOMException("The operation was aborted due to timeout", "TimeoutError"), status: 503, names: /timeout/ },
  {
    name: "an RBAC refusal (403)",
    error: new ApiError(403, "Forbidden", 'jobs.batch is forbidden: User "system:serviceaccount:walle-system:walle-reconcile" cannot create'),
    status: 500,
    names: /403 Forbidden.*cannot create/,
  },
  {
    name: "a kind that is not installed (404)",
    error: new ApiError(404, "NotFound", "the server could not find the requested resource"),
    status: 500,
    names: /404 NotFound/,
  },
  {
    name: "an invalid object (422) wrapped with context",
    error: new Error("create Job", { cause: new ApiError(422, "Invalid", "spec.template: Required value") }),
    status: 500,
    names: /create Job.*Required value/,
  },
  {
    name: "a bug in the handler",
    error: new TypeError("Cannot read properties of undefined (reading 'spec')"),
    status: 500,
    names: /Internal error.*reading 'spec'/,
  },
];

describe("handler outcomes become status codes", () => {
  it.each([200, 202, 204] as const)("passes the handler's %i through", async (status) => {
    const { app } = setup({ respond: async () => ({ status, body: status === 204 ? undefined : { status } }) });
    const res = await postBinary(app, apiServerHeaders());
    expect(res.status).toBe(status);
    if (status !== 204) expect(res.body).toEqual({ status });
  });

  it.each(errorCases)("$name → $status", async ({ error, status, names, level }) => {
    const { app, lines } = setup({
      respond: async () => {
        throw error;
      },
    });
    const res = await postBinary(app, apiServerHeaders());
    expect(res.status).toBe(status);
    expect(res.type).toBe("application/json");
    expect(JSON.stringify(res.body)).toMatch(names);
    const line = lines.find((l) => l.status === status);
    expect(line?.level).toBe(level ?? (status === 500 ? "error" : "warn"));
    expect(line?.ceId).toBe("5b3b0b7e-1f7e-4a8e-9f43-2b1c3d4e5f60");
  });

  it("passes BadEventError's issues on", async () => {
    const issues = [{ path: "pvc", message: "is required" }];
    const { app } = setup({
      respond: async () => {
        throw new BadEventError("Invalid backup request", issues);
      },
    });
    const res = await postStructured(app, structured({ type: EventType.BackupRequested, data: {} }));
    expect(res.body).toEqual({ error: "Invalid backup request", issues });
  });
});

// ---- Probes and routes

describe("probes and routes", () => {
  it("answers /healthz and /readyz with 200 JSON", async () => {
    const { app } = setup();
    for (const path of ["/healthz", "/readyz"]) {
      const res = await request(app).get(path);
      expect(res.status).toBe(200);
      expect(res.type).toBe("application/json");
    }
  });

  it("answers other paths with 404 and other methods on / with 405", async () => {
    const { app } = setup();
    expect((await request(app).get("/nope")).status).toBe(404);
    const get = await request(app).get("/");
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe("POST");
  });
});

// ---- Shutdown

/** A promise with its resolve function, to hold the handler until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** Polls a condition of the server's own state, which no event tells the test about. */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; !condition(); i++) {
    if (i > 200) throw new Error("condition not met within 2 s");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("shutdown", () => {
  let server: Receiver | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("stops taking events, finishes those in flight, then closes", async () => {
    const release = gate();
    const entered = gate();
    const started = setup({
      respond: async () => {
        entered.open();
        await release.promise;
        return { status: 200, body: { finished: true } };
      },
    });
    server = started.server;
    const { port } = await server.listen(0, "127.0.0.1");
    const url = `http://127.0.0.1:${port}`;

    const inFlight = postBinary(url, apiServerHeaders()).then((r) => r);
    await entered.promise;
    expect(server.inFlight).toBe(1);

    let closed = false;
    const closing = server.close().then(() => (closed = true));

    const ready = await request(url).get("/readyz");
    expect(ready.status).toBe(503);
    expect((await request(url).get("/healthz")).status).toBe(200);
    const refused = await postBinary(url, apiServerHeaders({ "ce-id": "after-sigterm" }));
    expect(refused.status).toBe(503);
    expect(refused.type).toBe("application/json");
    expect(closed).toBe(false);

    release.open();
    const first = await inFlight;
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ finished: true });
    await closing;
    expect(closed).toBe(true);
    expect(started.calls.map((c) => c.event.id)).toEqual(["5b3b0b7e-1f7e-4a8e-9f43-2b1c3d4e5f60"]);
    await expect(request(url).get("/healthz")).rejects.toThrow(/ECONNREFUSED/);
  });

  it("does not wait for a client that went away in the middle of its body", async () => {
    const started = setup();
    server = started.server;
    const { port } = await server.listen(0, "127.0.0.1");
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path: "/", headers: { ...apiServerHeaders(), "content-length": "1000" } });
    req.on("error", () => {});
    req.write('{"apiVersion":');
    await until(() => server?.inFlight === 1);
    req.destroy();
    await until(() => server?.inFlight === 0);
    await Promise.all([server.close(), server.close()]);
    expect(started.calls).toHaveLength(0);
    expect(started.lines.find((l) => l.msg === "Rejected malformed CloudEvent")?.error).toMatch(/aborted|closed the connection/);
  });

  it("closes at once when nothing is in flight", async () => {
    server = setup().server;
    await server.listen(0, "127.0.0.1");
    await server.close();
    expect(server.inFlight).toBe(0);
  });
});

// ---- The logger

describe("createLogger", () => {
  it("masks secret-looking fields, and writes the level by name and the function on every line", () => {
    const { log, lines } = capturedLog();
    log.info(
      {
        headers: { authorization: "Bearer abc" },
        env: { RESTIC_PASSWORD: "pw", AWS_SECRET_ACCESS_KEY: "key" },
        req: { headers: { authorization: "Bearer def" } },
        token: "t",
      },
      "Sent request",
    );
    const text = JSON.stringify(lines);
    expect(text).not.toMatch(/abc|def|"pw"|"key"|"t"/);
    expect(lines[0]).toMatchObject({ level: "info", function: "walle-reconcile", msg: "Sent request", token: "***" });
  });
});

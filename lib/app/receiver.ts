// The CloudEvents receiver every function mounts: an express 5 app that turns a request into one validated
// CloudEvent (binary or structured mode, `validate()`, the envelope checked), reads the sender's credentials (the
// application layer judges them, auth.ts), hands the event to the function's `handle(context, event)`, and turns the outcome into the status code ApiServerSource
// acts on (docs/architecture.md, Events): 2xx handled or ignored, 400 malformed (never retried), 503 when the API server failed
// (retried). It answers the platform's probes, and drains on shutdown.
import { CloudEvent, HTTP, ValidationError, type CloudEventV1 } from "cloudevents";
import express, { type ErrorRequestHandler, type NextFunction, type Request, type RequestHandler, type Response } from "express";
import { createHash, timingSafeEqual } from "node:crypto";
import http, { type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { z } from "zod";
import { ApiError } from "../k8s/rest.ts";
import { StreamTrailer } from "../api/constants.ts";
import { BadEventError, eventTypes, ForbiddenError, NotFoundError, UnauthenticatedError, type Credentials, type Handle, type Issue } from "./events.ts";
import type { CommandStream } from "./walle.ts";

export const defaultMaxBodyBytes = 1024 * 1024;

/**
 * A client gets this long to send its headers, and this long for the whole request, body included: a sender that
 * trickles bytes (a slow-loris) is cut off with 408 instead of holding a connection and a scale-from-zero instance.
 */
export const defaultHeadersTimeoutMs = 10_000;
export const defaultRequestTimeoutMs = 30_000;

export interface ReceiverOptions {
  readonly handle: Handle;
  readonly log: Logger;
  /** Opt-in: a request carrying `Authorization: Bearer <this token>` is taken as an admin's (auth.ts). */
  readonly triggerToken?: string;
  /** Larger bodies get 413, and are read no further. Default 1 MiB: a Resource-mode event carries one object, far below it. */
  readonly maxBodyBytes?: number;
  /** A request whose headers or whole body take longer gets 408 and its connection closed. */
  readonly headersTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
  /**
   * GET /streams/<namespace>/<name>: a BackupJob's backup command's output, for its worker (Walle.streamCommand).
   * The body is the output as it comes; the trailers say how the command ended (StreamTrailer).
   */
  readonly stream?: (at: { namespace: string; name: string }, credentials: Credentials, log: Logger) => Promise<CommandStream>;
}

export interface Receiver {
  /** The express app, for http.createServer or supertest. */
  readonly app: express.Express;
  /** Listens on `port` (0 picks a free one) and resolves with the address. */
  listen(port: number, host?: string): Promise<AddressInfo>;
  /** Stops taking events (readyz and new POSTs answer 503), waits for the events in flight, then closes. */
  close(): Promise<void>;
  /** Events being handled now. */
  readonly inFlight: number;
}

/** What the receiver answers: a status and a JSON body. */
interface Reply {
  readonly status: number;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/** A request that is not one valid CloudEvent of a known type: 400, and the handler never sees it. */
class MalformedEventError extends Error {
  override name = "MalformedEventError";
  readonly issues: readonly Issue[];
  constructor(message: string, issues: readonly Issue[] = []) {
    super(message);
    this.issues = issues;
  }
}

export function createReceiver(opts: ReceiverOptions): Receiver {
  const maxBodyBytes = opts.maxBodyBytes ?? defaultMaxBodyBytes;
  const drain = new Drain();
  let listening: Server | undefined;
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);

  app.get("/healthz", (_req, res) => send(res, { status: 200, body: { status: "ok" } }));
  app.get("/readyz", (_req, res) => send(res, drain.closing ? { status: 503, body: { status: "shutting down" } } : { status: 200, body: { status: "ready" } }));
  const admit: RequestHandler = (req, res, next) => {
    if (!drain.closing) return drain.track(res, next);
    // ApiServerSource retries a 503; Knative's queue-proxy has by then stopped routing to this instance.
    req.resume();
    send(res, { status: 503, body: { error: "The function is shutting down; send the event again" } });
  };
  const receive: RequestHandler = (req, res, next) => void onEvent(req, res).catch(next);
  // The body-parser's own failures: too large, or the client went away before its end. Too large stops reading
  // there: the reply closes the connection rather than read the rest of what the sender would push.
  const bodyFailed: ErrorRequestHandler = (err: unknown, _req, res, next) => {
    if (res.headersSent) return next(err);
    const failure = bodyError(err, maxBodyBytes);
    if (failure instanceof TooLargeError) res.setHeader("connection", "close");
    finish(res, outcomeOfError(failure), opts.log, performance.now());
  };
  // Every body as bytes, whatever its type: the mode decides how it is read.
  app.post("/", admit, express.raw({ type: () => true, limit: maxBodyBytes }), receive, bodyFailed);
  if (opts.stream) {
    const stream = opts.stream;
    app.get("/streams/:namespace/:name", admit, (req, res) => void streamOut(stream, req, res));
  }
  app.all("/", (_req, res) => send(res, { status: 405, body: { error: "Send CloudEvents with POST" }, headers: { allow: "POST" } }));
  app.use((req, res) => send(res, { status: 404, body: { error: `No route for ${req.method} ${req.path}` } }));
  // Only a bug in the receiver itself lands here: the event path answers every error it meets.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    opts.log.error({ err }, "Failed to answer request");
    if (!res.headersSent) send(res, { status: 500, body: { error: "Internal error" } });
  });

  async function onEvent(req: Request, res: Response): Promise<void> {
    const started = performance.now();
    let log = opts.log;
    let outcome: Outcome;
    try {
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const event = parseEvent(req.headers, body);
      log = opts.log.child(eventLogFields(event));
      const result = await opts.handle({ log, credentials: credentialsOf(req.headers, opts.triggerToken) }, event);
      outcome = { reply: { status: result.status, body: result.body }, level: "info", msg: "Handled CloudEvent" };
    } catch (err) {
      outcome = outcomeOfError(err);
    }
    finish(res, outcome, log, started);
  }

  /** A command's output as the response body, its end in the trailers; refusals before it starts as JSON. */
  async function streamOut(stream: NonNullable<ReceiverOptions["stream"]>, req: Request, res: Response): Promise<void> {
    const started = performance.now();
    const at = { namespace: String(req.params.namespace), name: String(req.params.name) };
    const log = opts.log.child({ backupJob: `${at.namespace}/${at.name}` });
    let ready: CommandStream;
    try {
      // Only the worker's own token: the static trigger token stands for an admin, not for a worker.
      ready = await stream(at, credentialsOf(req.headers, undefined), log);
    } catch (err) {
      return finish(res, outcomeOfError(err), log, started);
    }
    const gone = new AbortController();
    res.once("close", () => gone.abort());
    res.writeHead(200, { "content-type": "application/octet-stream", trailer: `${StreamTrailer.ExitCode}, ${StreamTrailer.Error}` });
    let end: Awaited<ReturnType<CommandStream["run"]>>;
    try {
      end = await ready.run(res, gone.signal);
    } catch (err) {
      end = { error: messageOf(err) };
    }
    res.addTrailers({
      [StreamTrailer.ExitCode]: end.exitCode === undefined ? "" : String(end.exitCode),
      [StreamTrailer.Error]: encodeURIComponent((end.error ?? "").slice(-2000)),
    });
    res.end();
    log.info({ exitCode: end.exitCode, durationMs: Math.round(performance.now() - started) }, "Streamed the backup command's output");
  }

  return {
    app,
    get inFlight() {
      return drain.count;
    },
    listen(port, host) {
      const requestTimeout = opts.requestTimeoutMs ?? defaultRequestTimeoutMs;
      // Node checks the two deadlines every connectionsCheckingInterval (30 s by default): often enough for them.
      const server = http.createServer(
        {
          headersTimeout: Math.min(opts.headersTimeoutMs ?? defaultHeadersTimeoutMs, requestTimeout),
          requestTimeout,
          connectionsCheckingInterval: Math.min(1000, requestTimeout),
        },
        app,
      );
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host ?? "::", () => {
          server.off("error", reject);
          listening = server;
          resolve(server.address() as AddressInfo);
        });
      });
    },
    async close() {
      await drain.close();
      const server = listening;
      listening = undefined;
      // Node closes the idle keep-alive connections too, so this returns as soon as the last reply is out.
      if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** One line per event, whatever became of it. */
function finish(res: Response, outcome: Outcome, log: Logger, started: number): void {
  send(res, outcome.reply);
  const durationMs = Math.round((performance.now() - started) * 10) / 10;
  log[outcome.level]({ status: outcome.reply.status, durationMs, ...outcome.fields }, outcome.msg);
}

/** A body past the limit: 413. */
class TooLargeError extends Error {
  override name = "TooLargeError";
}

/** The body-parser's errors as the receiver names them. */
function bodyError(err: unknown, limit: number): unknown {
  const type = (err as { type?: unknown } | undefined)?.type;
  if (type === "entity.too.large") return new TooLargeError(`The body is larger than the limit of ${limit} bytes`);
  if (type === "request.aborted") return new MalformedEventError("The client closed the connection before the body ended (request aborted)");
  if (typeof type === "string") return new MalformedEventError(`The body could not be read: ${(err as Error).message}`);
  return err;
}

/** Counts the events in flight, so shutdown can wait for them, and refuses new ones once closing. */
class Drain {
  closing = false;
  count = 0;
  private idle: Promise<void> | undefined;
  private markIdle: () => void = () => {};

  /** Counts the request until its response is done or its connection is gone. */
  track(res: Response, next: NextFunction): void {
    this.count++;
    res.once("close", () => {
      this.count--;
      if (this.count === 0) this.markIdle();
    });
    next();
  }

  /** Resolves once nothing is in flight; every caller gets the same promise. */
  close(): Promise<void> {
    this.closing = true;
    this.idle ??= this.count === 0 ? Promise.resolve() : new Promise((resolve) => (this.markIdle = resolve));
    return this.idle;
  }
}

function send(res: Response, reply: Reply): void {
  res.status(reply.status);
  for (const [name, value] of Object.entries(reply.headers ?? {})) res.setHeader(name, value);
  if (reply.status === 204 || reply.body === undefined) {
    res.end();
    return;
  }
  res.type("application/json; charset=utf-8").send(JSON.stringify(reply.body));
}

// ---- The event

const Mode = { Binary: "binary", Structured: "structured" } as const;
type Mode = (typeof Mode)[keyof typeof Mode];

const structuredType = "application/cloudevents+json";
const batchType = "application/cloudevents-batch+json";
const jsonType = "application/json";

/** The media type of a Content-Type header, lower-cased, without parameters. */
function mediaType(headers: IncomingHttpHeaders): string {
  return (headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

function modeOf(headers: IncomingHttpHeaders): Mode {
  const media = mediaType(headers);
  if (media === batchType) throw new MalformedEventError("Batch mode is not supported: send one CloudEvent per request");
  if (media === structuredType) return Mode.Structured;
  if (media.startsWith("application/cloudevents")) throw new MalformedEventError(`Structured mode supports only ${structuredType}, not ${media}`);
  return Mode.Binary;
}

const required = (what: string) =>
  z.string({ error: (issue) => (issue.input === undefined ? `${what} is required` : `${what} must be a string`) }).min(1, `${what} must not be empty`);

/**
 * The context attributes the SDK would otherwise make up or let through: HTTP.toEvent fills in a missing `id`
 * and `time`, and both it and validate() accept spec versions other than 1.0. Walle speaks CloudEvents 1.0.
 */
const envelopeSchema = z.object({
  specversion: z.literal("1.0", { error: 'specversion must be "1.0"' }),
  id: required("id"),
  source: required("source"),
  type: required("type"),
  time: z.iso.datetime({ offset: true, error: "time must be an RFC 3339 timestamp" }).optional(),
});

function checkEnvelope(attributes: Record<string, unknown>, mode: Mode): void {
  const parsed = envelopeSchema.safeParse(attributes);
  if (parsed.success) return;
  // Name each attribute as the sender wrote it: a header in binary mode, a JSON member in structured mode.
  const where = (key: string) => (mode === Mode.Binary ? `ce-${key}` : key);
  const issues = parsed.error.issues.map((i) => ({ path: where(i.path.map(String).join(".")), message: i.message }));
  throw new MalformedEventError("The request is not a valid CloudEvent", issues);
}

function binaryAttributes(headers: IncomingHttpHeaders): Record<string, unknown> {
  const header = (name: string) => {
    const value = headers[`ce-${name}`];
    return Array.isArray(value) ? value.join(",") : value;
  };
  return { specversion: header("specversion"), id: header("id"), source: header("source"), type: header("type"), time: header("time") };
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new MalformedEventError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function structuredAttributes(body: string): Record<string, unknown> {
  const parsed = parseJson(body, "The body");
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new MalformedEventError("The body of a structured-mode CloudEvent must be a JSON object");
  }
  return parsed as Record<string, unknown>;
}

/**
 * Headers as the SDK's parsers want them. It picks a data parser by the exact Content-Type string, so
 * `application/json;charset=UTF-8` would leave JSON data unparsed, and rejects any structured-mode variant
 * but two.
 */
function sdkHeaders(headers: IncomingHttpHeaders, mode: Mode): IncomingHttpHeaders {
  if (mode === Mode.Structured) return { ...headers, "content-type": structuredType };
  return mediaType(headers) === jsonType ? { ...headers, "content-type": jsonType } : headers;
}

function validationIssues(err: ValidationError): Issue[] {
  const errors: readonly unknown[] = err.errors ?? [];
  return errors.map((e) => {
    if (typeof e === "string") return { path: "", message: e };
    const o = e as { instancePath?: unknown; message?: unknown };
    return { path: typeof o.instancePath === "string" ? o.instancePath : "", message: String(o.message ?? e) };
  });
}

/** One validated CloudEvent 1.0 of a type the function knows, or MalformedEventError. */
function parseEvent(headers: IncomingHttpHeaders, body: Buffer): CloudEventV1<unknown> {
  const mode = modeOf(headers);
  const text = body.toString("utf8");
  const attributes = mode === Mode.Binary ? binaryAttributes(headers) : structuredAttributes(text);
  checkEnvelope(attributes, mode);
  let event: CloudEventV1<unknown> | CloudEventV1<unknown>[];
  try {
    event = HTTP.toEvent<unknown>({ headers: sdkHeaders(headers, mode), body: mode === Mode.Binary ? text || undefined : attributes });
  } catch (err) {
    // The envelope is checked, so what fails here is the data (binary mode) or an attribute's format.
    if (err instanceof SyntaxError) throw new MalformedEventError(`The data is not valid JSON: ${err.message}`);
    throw new MalformedEventError(`The request is not a valid CloudEvent: ${(err as Error).message}`);
  }
  if (Array.isArray(event)) throw new MalformedEventError("Batch mode is not supported: send one CloudEvent per request");
  try {
    // toEvent builds the event without validating it: its extension names, formats and data_base64 are checked here.
    if (event instanceof CloudEvent) event.validate();
  } catch (err) {
    if (err instanceof ValidationError) throw new MalformedEventError(`The request is not a valid CloudEvent: ${err.message}`, validationIssues(err));
    throw err;
  }
  if (!eventTypes.includes(event.type)) {
    throw new MalformedEventError(`Unknown CloudEvent type ${JSON.stringify(event.type)}`, [
      { path: "type", message: `must be one of: ${eventTypes.join(", ")}` },
    ]);
  }
  return event;
}

/** The object an event is about, for the log: ApiServerSource's `namespace`/`name` extensions, else its subject. */
function eventLogFields(event: CloudEventV1<unknown>): Record<string, string> {
  const fields: Record<string, string> = { ceId: event.id, ceType: event.type };
  const fromSubject = /\/namespaces\/([^/]*)\/[^/]+\/([^/]+)$/.exec(event.subject ?? "");
  const namespace = typeof event.namespace === "string" ? event.namespace : fromSubject?.[1];
  const name = typeof event.name === "string" ? event.name : fromSubject?.[2];
  if (namespace) fields.namespace = namespace;
  if (name) fields.name = name;
  return fields;
}

// ---- The sender's credentials

const digest = (text: string): Buffer => createHash("sha256").update(text).digest();

/** Constant-time: comparing digests of equal length leaks neither the token's length nor its prefix. */
function tokenMatches(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

/** The request's bearer token: the static trigger token, or a token for Kubernetes to review. */
function credentialsOf(headers: IncomingHttpHeaders, staticToken: string | undefined): Credentials {
  const given = /^Bearer\s+(\S+)\s*$/i.exec(headers.authorization ?? "")?.[1];
  if (given === undefined) return { staticToken: false };
  if (staticToken !== undefined && tokenMatches(given, staticToken)) return { staticToken: true };
  return { staticToken: false, bearer: given };
}

// ---- Errors to status codes

/** The error and its causes: the handler wraps API errors with context (`new Error("create …", { cause })`). */
function* causes(err: unknown): Generator<unknown> {
  for (let e = err, depth = 0; e !== undefined && depth < 10; depth++) {
    yield e;
    e = e instanceof Error ? e.cause : undefined;
  }
}

function findCause<T>(err: unknown, type: abstract new (...args: never[]) => T): T | undefined {
  for (const e of causes(err)) if (e instanceof type) return e;
  return undefined;
}

// Errors of the connection to the API server (node:net, node:dns, undici) that a moment later may not recur.
const transportCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "ENOTFOUND",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

function isTransportError(err: unknown): boolean {
  for (const e of causes(err)) {
    if (!(e instanceof Error)) continue;
    const code = (e as { code?: unknown }).code;
    if ((typeof code === "string" && transportCodes.has(code)) || e.name === "TimeoutError") return true;
  }
  return false;
}

/**
 * An API error that a retry can cure: the server is overloaded or failing (429, 5xx), or another writer
 * changed the object first (409 Conflict; the retry re-reads it). AlreadyExists is also a 409, but the
 * handler meets it by design (deterministic names) and never lets it escape.
 */
const isTransientApiError = (e: ApiError): boolean => e.code >= 500 || e.code === 429 || (e.code === 409 && e.reason === "Conflict");

/** What became of an event: the reply, and the log line that records it. */
interface Outcome {
  readonly reply: Reply;
  readonly level: "info" | "warn" | "error";
  readonly msg: string;
  readonly fields?: Readonly<Record<string, unknown>>;
}

const errorBody = (message: string, issues: readonly Issue[]) => ({ error: message, ...(issues.length ? { issues } : {}) });

function outcomeOfError(err: unknown): Outcome {
  if (err instanceof MalformedEventError) {
    const fields = { error: err.message, issues: err.issues };
    return { reply: { status: 400, body: errorBody(err.message, err.issues) }, level: "warn", msg: "Rejected malformed CloudEvent", fields };
  }
  if (err instanceof TooLargeError) return { reply: { status: 413, body: { error: err.message } }, level: "warn", msg: "Rejected an oversized request" };
  const unauthenticated = findCause(err, UnauthenticatedError);
  if (unauthenticated) {
    const reply = { status: 401, body: { error: unauthenticated.message }, headers: { "www-authenticate": 'Bearer realm="walle"' } };
    return { reply, level: "warn", msg: "Rejected a trigger without a valid token", fields: { error: unauthenticated.message } };
  }
  const missing = findCause(err, NotFoundError);
  if (missing)
    return { reply: { status: 404, body: { error: missing.message } }, level: "warn", msg: "Nothing to answer with", fields: { error: missing.message } };
  const forbidden = findCause(err, ForbiddenError);
  if (forbidden)
    return {
      reply: { status: 403, body: { error: forbidden.message } },
      level: "warn",
      msg: "Refused a trigger that RBAC does not allow",
      fields: { error: forbidden.message },
    };
  const bad = findCause(err, BadEventError);
  if (bad) {
    const fields = { error: bad.message, issues: bad.issues };
    return { reply: { status: 400, body: errorBody(bad.message, bad.issues) }, level: "warn", msg: "Rejected CloudEvent with invalid data", fields };
  }
  const api = findCause(err, ApiError);
  if (api?.code === 409 && api.reason === "Conflict") {
    // Another writer (the function's other instance, a controller, the tick) changed the object between our read
    // and our write: expected under concurrency, and the retry reads the new version.
    const reply = { status: 503, body: { error: `Another writer changed the object first; retry: ${messageOf(err)}` } };
    return { reply, level: "info", msg: "Lost a write race (409 Conflict); the event will be retried", fields: { error: messageOf(err) } };
  }
  if ((api && isTransientApiError(api)) || (!api && isTransportError(err))) {
    const reply = { status: 503, body: { error: `The API server is unavailable: ${messageOf(err)}` } };
    return { reply, level: "warn", msg: "Failed to reach the API server; the event will be retried", fields: { err } };
  }
  if (api) {
    // A 4xx from the API server (403 from RBAC, 404 for a kind not installed, 422 for an object built wrong)
    // gives the same answer on every retry, so a 503 would only repeat it. A 500 tells ApiServerSource
    // "failed, do not retry", and the tick's resync drives the object again once the cause is fixed.
    const reply = { status: 500, body: { error: `The API server refused a request (${api.code} ${api.reason}): ${messageOf(err)}` } };
    return { reply, level: "error", msg: "Failed to handle CloudEvent: the API server refused a request", fields: { err } };
  }
  return { reply: { status: 500, body: { error: `Internal error: ${messageOf(err)}` } }, level: "error", msg: "Failed to handle CloudEvent", fields: { err } };
}

/** The message of an error and of its causes, outermost first: "create VolumeSnapshot: POST …: 403 forbidden". */
function messageOf(err: unknown): string {
  const parts: string[] = [];
  for (const e of causes(err)) parts.push(e instanceof Error ? e.message : String(e));
  return parts.join(": ");
}

// ---- Serving

/**
 * Listens on `port` and drains on SIGTERM (the platform scaling down) or SIGINT: events in flight finish, new
 * ones get 503, then the process exits 0. A second signal exits at once.
 */
export async function serve(receiver: Receiver, port: number, log: Logger): Promise<AddressInfo> {
  let draining = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (draining) {
      log.warn({ signal, inFlight: receiver.inFlight }, "Received a second signal; exiting without draining");
      process.exit(1);
    }
    draining = true;
    log.info({ signal, inFlight: receiver.inFlight }, "Received signal; draining events in flight");
    receiver.close().then(
      () => {
        log.info("Drained; exiting");
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, "Failed to drain");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  return receiver.listen(port);
}

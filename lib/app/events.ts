// The contract between the CloudEvents receiver (receiver.ts: HTTP and CloudEvents in, status codes out) and a
// function's `handle(context, event)` (what each event means). The receiver knows HTTP and CloudEvents; the
// handler knows Walle, through the application layer. Neither reaches into the other.
import type { CloudEventV1 } from "cloudevents";
import type { Logger } from "pino";
import type { z } from "zod";
import type { Issue } from "../core/requests.ts";

export type { Issue };

/** CloudEvent types Walle's functions accept. */
export const EventType = {
  /** ApiServerSource, Resource mode: `data` is the whole object (its last state on delete). */
  ResourceAdd: "dev.knative.apiserver.resource.add",
  ResourceUpdate: "dev.knative.apiserver.resource.update",
  ResourceDelete: "dev.knative.apiserver.resource.delete",
  /** ApiServerSource, Reference mode: `data` is `{kind, namespace, name, apiVersion}`. */
  RefAdd: "dev.knative.apiserver.ref.add",
  RefUpdate: "dev.knative.apiserver.ref.update",
  RefDelete: "dev.knative.apiserver.ref.delete",
  /** Forced work, curled by a person or a tool: authenticated by Kubernetes, authorized by RBAC. */
  BackupRequested: "io.ros.walle.backup.requested",
  RestoreRequested: "io.ros.walle.restore.requested",
  /** Drive all in-flight work one step (the tick sends it; so can a person). */
  Resync: "io.ros.walle.resync",
  /** Run the tick now: due schedules, prune and check, then the resync. */
  Tick: "io.ros.walle.tick",
  /** From the worker, while it runs. */
  BackupProgress: "io.ros.walle.backup.progress",
  RestoreProgress: "io.ros.walle.restore.progress",
  /** A Knative PingSource: the tick's other trigger, and a resync for reconcile. */
  Ping: "dev.knative.sources.ping",
} as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

export const eventTypes: readonly string[] = Object.values(EventType);

/** Event types that act on the cluster at a caller's request: each is authenticated and authorized (auth.ts). */
export const triggerEventTypes: readonly string[] = [EventType.BackupRequested, EventType.RestoreRequested, EventType.Resync, EventType.Tick];

export interface HandlerResult {
  /** 200/202/204 when handled or deliberately ignored. */
  readonly status: 200 | 202 | 204;
  readonly body?: unknown;
}

/** `data` that fails its schema: the receiver answers 400 with this message and the issues, and nothing changes. */
export class BadEventError extends Error {
  override name = "BadEventError";
  readonly issues: readonly Issue[];
  constructor(message: string, issues: readonly Issue[] = []) {
    super(message);
    this.issues = issues;
  }
}

/** What a request proved of its sender: the receiver reads it; the application layer judges it (auth.ts). */
export interface Credentials {
  /** Whether it carried the configured static trigger token (always false when none is configured). */
  readonly staticToken: boolean;
  /** Its `Authorization: Bearer` token otherwise: a Kubernetes token, for a TokenReview. */
  readonly bearer?: string;
}

/** What the receiver tells the handler about the request besides the event. */
export interface Context {
  /** A child logger that names the event and its object. */
  readonly log: Logger;
  readonly credentials: Credentials;
}

/** A trigger without a valid token: 401, and nothing changes. */
export class UnauthenticatedError extends Error {
  override name = "UnauthenticatedError";
}

/** A trigger by a caller RBAC does not allow it: 403, naming each permission missing, and nothing changes. */
export class ForbiddenError extends Error {
  override name = "ForbiddenError";
}

/** What was asked for is not there (→ 404). */
export class NotFoundError extends Error {
  override name = "NotFoundError";
}

/**
 * Handles one validated CloudEvent. Throws BadEventError for data that does not parse (→ 400), and lets
 * lib/k8s's ApiError or a transport error escape when the API server fails (→ 503, so ApiServerSource retries).
 */
export type Handle = (context: Context, event: CloudEventV1<unknown>) => Promise<HandlerResult>;

/** An event's `data` parsed with zod; a failure names each field under `data.`. */
export function parseData<S extends z.ZodType>(schema: S, event: CloudEventV1<unknown>): z.output<S> {
  const parsed = schema.safeParse(typeof event.data === "string" ? jsonOrText(event.data) : event.data);
  if (parsed.success) return parsed.data;
  throw new BadEventError(
    `${event.type}: data is invalid`,
    parsed.error.issues.map((i) => ({ path: ["data", ...i.path].join("."), message: i.message })),
  );
}

function jsonOrText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

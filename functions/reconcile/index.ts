// The reconcile function: what each CloudEvent means, as one handler over the application layer. ApiServerSource
// events prompt a level-triggered re-read of the Walle object they concern, and so need no credentials (docs/architecture.md, Security);
// forced backups and restores create one, and a resync drives all in-flight work, each only for a caller that
// Kubernetes authenticates and RBAC allows what the request does; worker progress updates a run's status.progress.
import type { CloudEventV1 } from "cloudevents";
import { BadEventError, EventType, parseData, type Context, type HandlerResult } from "../../lib/app/events.ts";
import { eventObjectSchema, eventRefSchema, type ChangeType, type Walle } from "../../lib/app/walle.ts";
import { backupAccess, restoreAccess, RESYNC_ACCESS } from "../../lib/core/access.ts";
import { backupRequestSchema, isRefusal, progressReportSchema, progressSubject, restoreRequestSchema } from "../../lib/core/requests.ts";

export interface ReconcileContext extends Context {
  readonly walle: Walle;
}

const changeOf = (type: string): ChangeType => (type.endsWith(".delete") ? "delete" : type.endsWith(".add") ? "add" : "update");

export async function handle(context: ReconcileContext, event: CloudEventV1<unknown>): Promise<HandlerResult> {
  const { walle, log } = context;
  switch (event.type) {
    case EventType.ResourceAdd:
    case EventType.ResourceUpdate:
    case EventType.ResourceDelete: {
      const object = parseData(eventObjectSchema, event);
      return { status: 200, body: await walle.changed({ mode: "resource", change: changeOf(event.type), object }, log) };
    }
    case EventType.RefAdd:
    case EventType.RefUpdate:
    case EventType.RefDelete: {
      const ref = parseData(eventRefSchema, event);
      return { status: 200, body: await walle.changed({ mode: "reference", change: changeOf(event.type), ref }, log) };
    }
    // A trigger's caller is authenticated before its data is parsed, and authorized once the data says what it does.
    case EventType.BackupRequested: {
      const who = await walle.authenticate(context.credentials, "forced backup");
      const req = parseData(backupRequestSchema, event);
      await walle.authorize(who, "forced backup", backupAccess(req, walle.config), log);
      const made = await walle.requestBackup(req, event.id, log);
      return { status: 202, body: { backupJob: { namespace: made.namespace, name: made.name }, created: made.created, phase: made.phase } };
    }
    case EventType.RestoreRequested: {
      const who = await walle.authenticate(context.credentials, "forced restore");
      const req = parseData(restoreRequestSchema, event);
      await walle.authorize(who, "forced restore", restoreAccess(req, walle.config), log);
      const made = await walle.requestRestore(req, event.id, log);
      return { status: 202, body: { backupRestore: { namespace: made.namespace, name: made.name }, created: made.created, phase: made.phase } };
    }
    case EventType.Resync:
    case EventType.Ping:
      // A PingSource's ping too: with Knative's OIDC feature it carries its own service account's token.
      await walle.authorize(await walle.authenticate(context.credentials, "resync"), "resync", RESYNC_ACCESS, log);
      return { status: 200, body: await walle.resync(log) };
    case EventType.BackupProgress:
    case EventType.RestoreProgress: {
      const worker = await walle.authenticateWorker(context.credentials, "progress");
      const report = parseData(progressReportSchema, event);
      const kind = event.type === EventType.BackupProgress ? "BackupJob" : "BackupRestore";
      const at = progressSubject(event.subject, kind);
      if (isRefusal(at)) throw new BadEventError(at.refused, at.issues);
      return { status: 200, body: await walle.recordProgress(kind, at, report, worker, log) };
    }
    default:
      throw new BadEventError(`unknown event type ${event.type}`, [{ path: "type", message: "unknown" }]);
  }
}

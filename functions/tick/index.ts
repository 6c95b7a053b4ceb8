// The tick function: what each CloudEvent means to it, as one handler over the application layer. A PingSource's
// ping or an io.ros.walle.tick runs the tick (due schedules, prune and check, history, then the resync); a
// backup request that names a schedule runs that whole schedule now, since the tick owns plans.
import type { CloudEventV1 } from "cloudevents";
import { z } from "zod";
import { BadEventError, EventType, parseData, type Context, type HandlerResult } from "../../lib/app/events.ts";
import type { Walle } from "../../lib/app/walle.ts";
import { scheduleAccess, TICK_ACCESS } from "../../lib/core/access.ts";
import { objectName } from "../../lib/api/common.ts";

export interface TickContext extends Context {
  readonly walle: Walle;
}

export const scheduleRequestSchema = z.strictObject({ schedule: objectName("schedule") });

export async function handle(context: TickContext, event: CloudEventV1<unknown>): Promise<HandlerResult> {
  const { walle, log } = context;
  switch (event.type) {
    case EventType.Ping:
    case EventType.Tick:
      await walle.authorize(await walle.authenticate(context.credentials, "tick"), "tick", TICK_ACCESS, log);
      return { status: 200, body: await walle.tick({}, log) };
    case EventType.BackupRequested: {
      // Authenticated before its data is parsed: an unknown caller learns nothing of the request's schema.
      const who = await walle.authenticate(context.credentials, "run of a schedule");
      const { schedule } = parseData(scheduleRequestSchema, event);
      await walle.authorize(who, "run of a schedule", scheduleAccess(schedule), log);
      const report = await walle.tick({ schedule, manual: { requestId: event.id } }, log);
      if (report.schedules === 0) throw new BadEventError(`BackupSchedule ${schedule} was not found`, [{ path: "data.schedule", message: "not found" }]);
      return { status: 202, body: report };
    }
    default:
      throw new BadEventError(`the tick does not handle ${event.type}`, [
        { path: "type", message: `must be ${EventType.Ping}, ${EventType.Tick} or ${EventType.BackupRequested}` },
      ]);
  }
}

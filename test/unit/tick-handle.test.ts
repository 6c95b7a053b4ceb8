// The tick function's handler: what each CloudEvent means to it, with the application layer stubbed.
import type { CloudEventV1 } from "cloudevents";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { handle } from "../../functions/tick/index.ts";
import { BadEventError } from "../../lib/app/events.ts";
import type { TickOptions, TickReport } from "../../lib/app/tick.ts";
import type { Walle } from "../../lib/app/walle.ts";

function stub(schedules = 1) {
  const calls: TickOptions[] = [];
  const report = (opts: TickOptions): TickReport => ({ now: "2026-12-02T00:00:00.000Z", dryRun: false, schedules: opts.schedule ? schedules : 3, actions: [], errors: [] });
  const walle = { tick: async (opts: TickOptions) => (calls.push(opts), report(opts)) } as unknown as Walle;
  return { context: { walle, log: pino({ level: "silent" }), triggerTokenChecked: false }, calls };
}

const event = (type: string, data?: unknown): CloudEventV1<unknown> => ({ specversion: "1.0", id: "evt-1", source: "/test", type, ...(data === undefined ? {} : { data }) });

describe("the tick's handle", () => {
  it.each(["dev.knative.sources.ping", "io.ros.walle.tick"])("%s runs a whole tick", async (type) => {
    const { context, calls } = stub();
    expect(await handle(context, event(type))).toMatchObject({ status: 200, body: { schedules: 3 } });
    expect(calls).toEqual([{}]);
  });

  it("a backup request naming a schedule runs that schedule now, named after the request", async () => {
    const { context, calls } = stub();
    expect((await handle(context, event("io.ros.walle.backup.requested", { schedule: "nightly" }))).status).toBe(202);
    expect(calls).toEqual([{ schedule: "nightly", manual: { requestId: "evt-1" } }]);
  });

  it.each([
    [{ schedule: "Not A Name" }, /data\.schedule/],
    [{ namespace: "default", pvc: "data" }, /data/],
  ])("refuses %j naming the field", async (data, field) => {
    const { context, calls } = stub();
    const err = await handle(context, event("io.ros.walle.backup.requested", data)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadEventError);
    expect(JSON.stringify((err as BadEventError).issues)).toMatch(field);
    expect(calls).toEqual([]);
  });

  it("a schedule that does not exist is a 400 naming it", async () => {
    const { context } = stub(0);
    await expect(handle(context, event("io.ros.walle.backup.requested", { schedule: "gone" }))).rejects.toThrow("BackupSchedule gone was not found");
  });

  it("refuses the events that are the reconcile function's", async () => {
    const { context } = stub();
    await expect(handle(context, event("dev.knative.apiserver.resource.add", {}))).rejects.toBeInstanceOf(BadEventError);
  });
});

// The tick function's handler: what each CloudEvent means to it, with the application layer stubbed.
import type { CloudEventV1 } from "cloudevents";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { handle } from "../../functions/tick/index.ts";
import { BadEventError, ForbiddenError, UnauthenticatedError } from "../../lib/app/events.ts";
import { describeAccess, type Access } from "../../lib/core/access.ts";
import type { TickOptions, TickReport } from "../../lib/app/tick.ts";
import type { Walle } from "../../lib/app/walle.ts";

function stub(schedules = 1, refuse = false) {
  const calls: TickOptions[] = [];
  const asked: string[] = [];
  const report = (opts: TickOptions): TickReport => ({
    now: "2026-12-02T00:00:00.000Z",
    dryRun: false,
    schedules: opts.schedule ? schedules : 3,
    actions: [],
    errors: [],
  });
  const walle = {
    tick: async (opts: TickOptions) => (calls.push(opts), report(opts)),
    authenticate: async (credentials: { bearer?: string }, what: string) => {
      asked.push(`authenticate ${what}`);
      if (!credentials.bearer) throw new UnauthenticatedError("no token");
      return { staticToken: false, caller: { username: "u", groups: [], extra: {}, audiences: [] } };
    },
    authorize: async (_who: unknown, what: string, needs: readonly Access[]) => {
      asked.push(`${what}: ${needs.map(describeAccess).join("; ")}`);
      if (refuse) throw new ForbiddenError("not allowed");
      return { staticToken: false, caller: { username: "u", groups: [], extra: {}, audiences: [] } };
    },
  } as unknown as Walle;
  return { context: { walle, log: pino({ level: "silent" }), credentials: { staticToken: false, bearer: "token" } }, calls, asked };
}

const event = (type: string, data?: unknown): CloudEventV1<unknown> => ({
  specversion: "1.0",
  id: "evt-1",
  source: "/test",
  type,
  ...(data === undefined ? {} : { data }),
});

describe("the tick's handle", () => {
  it.each(["dev.knative.sources.ping", "io.ros.walle.tick"])("%s runs a whole tick, for a caller RBAC allows to tick", async (type) => {
    const { context, calls, asked } = stub();
    expect(await handle(context, event(type))).toMatchObject({ status: 200, body: { schedules: 3 } });
    expect(calls).toEqual([{}]);
    expect(asked).toEqual(["authenticate tick", "tick: tick backupschedules.ros.io in all namespaces"]);
  });

  it("a backup request naming a schedule runs that schedule now, named after the request, for a caller allowed that schedule", async () => {
    const { context, calls, asked } = stub();
    expect((await handle(context, event("io.ros.walle.backup.requested", { schedule: "nightly" }))).status).toBe(202);
    expect(calls).toEqual([{ schedule: "nightly", manual: { requestId: "evt-1" } }]);
    expect(asked).toEqual(["authenticate run of a schedule", "run of a schedule: tick backupschedules.ros.io nightly in all namespaces"]);
  });

  it("an unauthenticated request is refused before its data is looked at: invalid data gets 401, not the schema", async () => {
    const { context, calls } = stub();
    const anonymous = { ...context, credentials: { staticToken: false } };
    for (const data of [{ schedule: "Not A Name" }, { namespace: "default", pvc: "data" }, undefined]) {
      await expect(handle(anonymous, event("io.ros.walle.backup.requested", data))).rejects.toBeInstanceOf(UnauthenticatedError);
    }
    expect(calls).toEqual([]);
  });

  it("runs nothing for a caller RBAC refuses", async () => {
    const { context, calls } = stub(1, true);
    await expect(handle(context, event("io.ros.walle.tick"))).rejects.toBeInstanceOf(ForbiddenError);
    await expect(handle(context, event("io.ros.walle.backup.requested", { schedule: "nightly" }))).rejects.toBeInstanceOf(ForbiddenError);
    expect(calls).toEqual([]);
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

// A BackupSchedule at one tick, as pure decisions: the BackupSet and BackupJobs of a due slot (named after it),
// no-ops for a second tick, skips while a run goes on, history bounded by keepSucceeded/keepFailed, suspend,
// prune and check kept off a busy repository, and the status with the original's semantics.
import { describe, expect, it } from "vitest";
import type { BackupSchedule } from "../../lib/api/parse.ts";
import { backupSetName, decideSchedule, pendingBackupRequest, type ScheduleWorld } from "../../lib/core/backup-schedule.ts";
import type { Action } from "../../lib/core/decision.ts";
import type { Job, ObjectSummary } from "../../lib/core/objects.ts";
import type { Selection } from "../../lib/core/plans.ts";
import { planTick, tickReads } from "../../lib/core/tick.ts";
import { testConfig as config } from "../support/config.ts";

const t = (iso: string) => new Date(iso);
const createdAt = "2026-12-01T00:00:00Z";

function schedule(spec: Partial<BackupSchedule["spec"]> = {}, status?: BackupSchedule["status"]): BackupSchedule {
  return {
    apiVersion: "ros.io/v1",
    kind: "BackupSchedule",
    metadata: { name: "example-schedule", uid: "5c4e0000-0000-4000-8000-000000000001", generation: 1, creationTimestamp: createdAt },
    spec: {
      interval: "6h",
      suspend: false,
      keepSucceeded: 1,
      keepFailed: 3,
      plans: [{ type: "pod" }],
      repository: { name: "restic-repo", namespace: "walle" },
      ...spec,
    },
    ...(status ? { status } : {}),
  } as BackupSchedule;
}

const selection: Selection = {
  targets: [
    { namespace: "default", pvc: "example-volume", plan: 0 },
    { namespace: "shop", pvc: "db", plan: 0 },
  ],
  skipped: [{ namespace: "shop", pvc: "cache", reason: "the PVC is Pending, not Bound" }],
  errors: [],
};
const world = (s: BackupSchedule, extra: Partial<ScheduleWorld> = {}): ScheduleWorld => ({
  schedule: s,
  sets: [],
  jobs: [],
  repositoryJobs: [],
  selection,
  ...extra,
});
const created = (actions: readonly Action[]) =>
  actions.flatMap((a) => (a.op === "create" ? [`${a.manifest.kind} ${a.manifest.metadata.namespace ?? ""}/${a.manifest.metadata.name}`] : []));
const deleted = (actions: readonly Action[]) => actions.flatMap((a) => (a.op === "delete" ? [`${a.target.kind} ${a.target.name}`] : []));
const set = (name: string, state: string | undefined, at: string): ObjectSummary => ({
  metadata: { name, creationTimestamp: at, labels: { "ros.io/backup-schedule": "example-schedule" } },
  ...(state ? { status: { state } } : {}),
});

describe("decideSchedule", () => {
  it("a new 6h schedule backs up at once: one BackupSet for its slot, one BackupJob per PVC, labelled and owned as the original does", () => {
    const d = decideSchedule(world(schedule()), config, t("2026-12-01T00:02:00Z"));
    const setName = "example-schedule-20261201t000000z";
    expect(created(d.actions)).toEqual([`BackupSet /${setName}`, `BackupJob default/${setName}-example-volume`, `BackupJob shop/${setName}-db`]);
    const [setAction, jobAction] = d.actions;
    expect(setAction?.op === "create" && setAction.manifest).toMatchObject({
      metadata: {
        labels: { "app.kubernetes.io/created-by": "walle", "ros.io/backup-schedule": "example-schedule" },
        ownerReferences: [{ kind: "BackupSchedule", name: "example-schedule", uid: "5c4e0000-0000-4000-8000-000000000001", controller: true }],
      },
      spec: { selector: { matchLabels: { "ros.io/backup-schedule": "example-schedule", "ros.io/backupset": setName } } },
    });
    // The set says how many BackupJobs its run makes, so it cannot finish with fewer if the tick dies part-way.
    expect(setAction?.op === "create" && setAction.manifest.metadata.annotations).toEqual({ "ros.io/backup-jobs": "2" });
    expect(jobAction?.op === "create" && jobAction).toMatchObject({
      ownedBy: { kind: "BackupSet", name: setName },
      manifest: {
        metadata: { labels: { "ros.io/backupset": setName, "ros.io/backup-schedule": "example-schedule" } },
        spec: { sourcePvc: "example-volume", repository: { name: "restic-repo", namespace: "walle" } },
      },
    });
    expect(d.status).toMatchObject({
      state: "Running",
      lastBackupRun: "2026-12-01T00:02:00Z",
      nextBackupRun: "2026-12-01T06:00:00Z",
      scheduler: { backupTimestamp: "2026-12-01T00:00:00Z" },
      conditions: [{ type: "BackupReady", status: "False", reason: "Running" }],
    });
    expect(d.events.map((e) => e.reason)).toEqual(["PvcSkipped", "BackupStarted"]);
    expect(d.events[0]?.note).toBe("Skipped PVC shop/cache: the PVC is Pending, not Bound.");
  });

  it("until a run has backed something up, all but one worker wait for the repository instead of racing restic init", () => {
    const annotations = (d: ReturnType<typeof decideSchedule>) =>
      d.actions.flatMap((a) => (a.op === "create" && a.manifest.kind === "BackupJob" ? [a.manifest.metadata.annotations ?? {}] : []));
    const first = decideSchedule(world(schedule()), config, t("2026-12-01T00:02:00Z"));
    expect(annotations(first)).toEqual([{}, { "ros.io/initializes-repository": "false" }]);
    const backedUp = {
      ...set("example-schedule-20261201t000000z", "FinishedWithFailures", createdAt),
      status: { state: "FinishedWithFailures", statistics: { finishedJobs: 1, failedJobs: 1 } },
    } as ObjectSummary;
    const later = decideSchedule(
      world(schedule({}, { scheduler: { backupTimestamp: "2026-12-01T00:00:00Z" } }), { sets: [backedUp] }),
      config,
      t("2026-12-01T06:01:00Z"),
    );
    expect(annotations(later)).toEqual([{}, {}]);
  });

  it("gives each BackupJob its plan's workerSecurityContext, else the schedule's", () => {
    const contexts = (d: ReturnType<typeof decideSchedule>) =>
      d.actions.flatMap((a) =>
        a.op === "create" && a.manifest.kind === "BackupJob" ? [(a.manifest.spec as { workerSecurityContext?: unknown }).workerSecurityContext] : [],
      );
    const twoPlans: Selection = {
      ...selection,
      targets: [
        { namespace: "default", pvc: "example-volume", plan: 0 },
        { namespace: "shop", pvc: "db", plan: 1 },
      ],
    };
    const s = schedule({
      workerSecurityContext: { runAsUser: 1000 },
      plans: [{ type: "pod" }, { type: "persistentVolumeClaim", workerSecurityContext: { runAsUser: 999, fsGroup: 999 } }],
    });
    expect(contexts(decideSchedule(world(s, { selection: twoPlans }), config, t("2026-12-01T00:02:00Z")))).toEqual([
      { runAsUser: 1000 },
      { runAsUser: 999, fsGroup: 999 },
    ]);
    expect(contexts(decideSchedule(world(schedule()), config, t("2026-12-01T00:02:00Z")))).toEqual([undefined, undefined]);
  });

  it("a second tick in the same window, with the status written, does nothing new", () => {
    const first = decideSchedule(world(schedule()), config, t("2026-12-01T00:02:00Z"));
    const again = decideSchedule(
      world(schedule({}, first.status), { sets: [set("example-schedule-20261201t000000z", "Running", "2026-12-01T00:02:00Z")] }),
      config,
      t("2026-12-01T00:03:00Z"),
    );
    expect(again.actions).toEqual([]);
  });

  it("a second tick that did not see the first one's status write makes the same names (AlreadyExists)", () => {
    const a = decideSchedule(world(schedule()), config, t("2026-12-01T00:02:00Z"));
    const b = decideSchedule(world(schedule()), config, t("2026-12-01T00:04:00Z"));
    expect(created(b.actions)).toEqual(created(a.actions));
  });

  it("skips its turn while the previous run has not finished, as the original did, and moves the scheduler on", () => {
    const s = schedule({}, { scheduler: { backupTimestamp: "2026-12-01T00:00:00Z" } });
    const d = decideSchedule(world(s, { sets: [set("example-schedule-20261201t000000z", "Running", createdAt)] }), config, t("2026-12-01T06:01:00Z"));
    expect(d.actions).toEqual([]);
    expect(d.status.scheduler?.backupTimestamp).toBe("2026-12-01T06:00:00Z");
    expect(d.events).toEqual([expect.objectContaining({ type: "Warning", reason: "BackupSkipped" })]);
  });

  it("suspend starts nothing and clears nextBackupRun, while the running set's outcome still shows", () => {
    const s = schedule({ suspend: true }, { scheduler: { backupTimestamp: "2026-12-01T00:00:00Z" }, nextBackupRun: "2026-12-01T06:00:00Z" });
    const d = decideSchedule(world(s, { sets: [set("example-schedule-20261201t000000z", "Finished", createdAt)] }), config, t("2026-12-02T00:00:00Z"));
    expect(d.actions).toEqual([]);
    expect(d.status.nextBackupRun).toBeUndefined();
    expect(d.status.state).toBe("Finished");
  });

  it("keeps keepSucceeded finished and keepFailed failed BackupSets, newest first, and deletes the rest", () => {
    const states = [
      "Finished",
      "FinishedWithFailures",
      "Finished",
      "FinishedWithFailures",
      "FinishedWithFailures",
      "Finished",
      "FinishedWithFailures",
      "Running",
      "Finished",
      "FinishedWithFailures",
    ];
    const sets = states.map((state, i) => set(`run-${i}`, state, `2026-12-0${1 + Math.floor(i / 5)}T0${i % 5}:00:00Z`));
    const s = schedule({ keepSucceeded: 1, keepFailed: 3 }, { scheduler: { backupTimestamp: "2026-12-02T04:00:00Z" } });
    const d = decideSchedule(world(s, { sets }), config, t("2026-12-02T05:00:00Z"));
    // Newest first: 9 F-W-F, 8 F, 7 Running, 6 F-W-F, 5 F, 4 FWF, 3 FWF, 2 F, 1 FWF, 0 F.
    expect(deleted(d.actions).sort()).toEqual(["BackupSet run-0", "BackupSet run-1", "BackupSet run-2", "BackupSet run-3", "BackupSet run-5"]);
  });

  it("a run taken up again after a tick died part-way makes what is missing, and corrects the count when the selection changed", () => {
    const setName = "example-schedule-20261201t000000z";
    const partial = {
      ...set(setName, "Running", "2026-12-01T00:02:00Z"),
      metadata: { ...set(setName, "Running", "2026-12-01T00:02:00Z").metadata, annotations: { "ros.io/backup-jobs": "3" } },
    };
    const d = decideSchedule(world(schedule(), { sets: [partial] }), config, t("2026-12-01T00:07:00Z"));
    expect(created(d.actions)).toEqual([`BackupSet /${setName}`, `BackupJob default/${setName}-example-volume`, `BackupJob shop/${setName}-db`]);
    expect(d.actions.filter((a) => a.op === "patch")).toEqual([
      {
        op: "patch",
        target: { apiVersion: "ros.io/v1", kind: "BackupSet", name: setName },
        patch: { metadata: { annotations: { "ros.io/backup-jobs": "2" } } },
      },
    ]);
    const same = decideSchedule(
      world(schedule(), { sets: [{ ...partial, metadata: { ...partial.metadata, annotations: { "ros.io/backup-jobs": "2" } } }] }),
      config,
      t("2026-12-01T00:07:00Z"),
    );
    expect(same.actions.filter((a) => a.op === "patch")).toEqual([]);
  });

  it("one catch-up run after 3 days down, with the missed slots in its Event", () => {
    const s = schedule({}, { scheduler: { backupTimestamp: "2026-12-01T06:00:00Z" } });
    const d = decideSchedule(world(s), config, t("2026-12-04T07:30:00Z"));
    expect(created(d.actions).filter((c) => c.startsWith("BackupSet"))).toEqual(["BackupSet /example-schedule-20261204t060000z"]);
    expect(d.events.at(-1)?.note).toMatch(/11 earlier slots were missed; this one run catches up/);
  });

  it("a plan no selector can evaluate starts nothing and says why on BackupReady", () => {
    const d = decideSchedule(
      world(schedule(), { selection: { targets: [], skipped: [], errors: ['plans[0].fieldSelector: field "x" is not a field selector of pods'] } }),
      config,
      t("2026-12-01T00:02:00Z"),
    );
    expect(d.actions).toEqual([]);
    expect(d.status.conditions).toEqual([
      expect.objectContaining({ type: "BackupReady", status: "False", reason: "InvalidPlan", message: expect.stringContaining("plans[0].fieldSelector") }),
    ]);
  });

  it("prune waits while anyone writes to the repository, then runs as a worker Job with the retention policy", () => {
    const spec = { prune: { interval: "1d", retain: { daily: 7, within: "2d" } }, check: { interval: "1w" } };
    const s = schedule(spec, { scheduler: { backupTimestamp: "2026-12-02T00:00:00Z" } });
    const busy: Job = {
      metadata: { name: "walle-backup-default-x", namespace: "walle", labels: { "ros.io/repository": "restic-repo" } },
      status: { active: 1 },
    };
    const waiting = decideSchedule(world(s, { repositoryJobs: [busy] }), config, t("2026-12-02T00:10:00Z"));
    expect(created(waiting.actions)).toEqual([]);
    expect(waiting.status.conditions).toContainEqual(expect.objectContaining({ type: "PruneOk", reason: "RepositoryBusy" }));

    const d = decideSchedule(world(s), config, t("2026-12-02T00:10:00Z"));
    expect(created(d.actions)).toEqual(["ServiceAccount walle/walle-worker", "Job walle/walle-prune-example-schedule-20261202t000000z"]);
    const job = d.actions[1]?.op === "create" ? d.actions[1].manifest : undefined;
    expect(job).toMatchObject({
      metadata: {
        labels: { "ros.io/backup-job-type": "prune", "ros.io/backup-schedule": "example-schedule", "ros.io/repository": "restic-repo" },
        ownerReferences: [{ kind: "BackupSchedule" }],
      },
      spec: {
        template: {
          spec: {
            serviceAccountName: "walle-worker",
            automountServiceAccountToken: false,
            containers: [
              {
                args: ["prune"],
                envFrom: [{ prefix: "SECRET_", secretRef: { name: "restic-repo" } }],
                env: expect.arrayContaining([
                  { name: "RETENTION", value: '{"daily":7,"within":"2d"}' },
                  { name: "BACKUP_SCHEDULE", value: "example-schedule" },
                ]),
              },
            ],
          },
        },
      },
    });
    expect(d.status).toMatchObject({ lastPruneRun: "2026-12-02T00:10:00Z", scheduler: { pruneTimestamp: "2026-12-02T00:00:00Z" } });
    // Only a tick that found no worker of the cluster running vouches for the locks taken before it looked.
    expect(JSON.stringify(job)).not.toContain("STALE_LOCKS_BEFORE");
    const quiet = decideSchedule(world(s, { quietSince: t("2026-12-02T00:09:59Z") }), config, t("2026-12-02T00:10:00Z"));
    const quietJob = quiet.actions[1]?.op === "create" ? quiet.actions[1].manifest : undefined;
    expect(quietJob).toMatchObject({
      spec: { template: { spec: { containers: [{ env: expect.arrayContaining([{ name: "STALE_LOCKS_BEFORE", value: "2026-12-02T00:09:59Z" }]) }] } } },
    });
  });

  it("a failed check makes the state CheckFailed", () => {
    const s = schedule({ check: { interval: "1w" } }, { scheduler: { backupTimestamp: "2026-12-02T00:00:00Z", checkTimestamp: "2026-12-01T00:00:00Z" } });
    const failed: Job = {
      metadata: { name: "walle-check-x", namespace: "walle", creationTimestamp: createdAt, labels: { "ros.io/backup-job-type": "check" } },
      status: {
        failed: 1,
        conditions: [{ type: "Failed", status: "True", reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit" }],
      },
    };
    const d = decideSchedule(world(s, { jobs: [failed] }), config, t("2026-12-02T01:00:00Z"));
    expect(d.status.state).toBe("CheckFailed");
    expect(d.status.conditions).toContainEqual(expect.objectContaining({ type: "CheckOk", status: "False", reason: "Failed" }));
  });

  it("a run asked for by an event is named after the request, leaves the grid alone, and runs even inside the interval", () => {
    const s = schedule({}, { scheduler: { backupTimestamp: "2026-12-02T00:00:00Z" } });
    const d = decideSchedule(world(s), config, t("2026-12-02T01:00:00Z"), { requestId: "evt-1" });
    expect(created(d.actions)[0]).toBe(`BackupSet /${backupSetName("example-schedule", { requestId: "evt-1" })}`);
    expect(d.status.scheduler?.backupTimestamp).toBe("2026-12-02T00:00:00Z");
  });
});

describe("a run asked for by the ros.io/backup-requested annotation", () => {
  const asked = (id: string, status?: BackupSchedule["status"], spec: Partial<BackupSchedule["spec"]> = {}): BackupSchedule => {
    const s = schedule(spec, status);
    return { ...s, metadata: { ...s.metadata, annotations: { "ros.io/backup-requested": id } } };
  };
  const now = t("2026-12-02T01:00:00Z");
  const grid = { scheduler: { backupTimestamp: "2026-12-02T00:00:00Z" } };

  it("is pending until the status answers that very value", () => {
    expect(pendingBackupRequest(schedule())).toBeUndefined();
    expect(pendingBackupRequest(asked("2026-12-02T00:59:59.123Z"))).toEqual({ requestId: "2026-12-02T00:59:59.123Z" });
    expect(pendingBackupRequest(asked("a", { lastBackupRequest: { id: "a", time: "2026-12-02T01:00:00Z", message: "m" } }))).toBeUndefined();
    expect(pendingBackupRequest(asked("b", { lastBackupRequest: { id: "a", time: "2026-12-02T01:00:00Z", message: "m" } }))).toEqual({ requestId: "b" });
    expect(pendingBackupRequest(asked(""))).toBeUndefined();
  });

  it("runs it named after the value, answers it in the status, and does nothing else: no clock, prune, check or history", () => {
    const s = asked(
      "req-1",
      { ...grid, scheduler: { ...grid.scheduler, pruneTimestamp: "2026-11-01T00:00:00Z" } },
      { prune: { interval: "1d", retain: { last: 1 } }, keepSucceeded: 1 },
    );
    const old = [set("example-schedule-a", "Finished", "2026-12-01T06:00:00Z"), set("example-schedule-b", "Finished", "2026-12-01T12:00:00Z")];
    const d = decideSchedule(world(s, { sets: old }), config, now, pendingBackupRequest(s));
    const name = backupSetName("example-schedule", { requestId: "req-1" });
    expect(created(d.actions)).toEqual([`BackupSet /${name}`, `BackupJob default/${name}-example-volume`, `BackupJob shop/${name}-db`]);
    expect(deleted(d.actions)).toEqual([]);
    expect(d.status.lastBackupRequest).toEqual({
      id: "req-1",
      time: "2026-12-02T01:00:00Z",
      backupSet: name,
      message: `Started BackupSet ${name} with 2 BackupJobs.`,
    });
    expect(d.status.scheduler).toEqual({ backupTimestamp: "2026-12-02T00:00:00Z", pruneTimestamp: "2026-11-01T00:00:00Z" });
  });

  it("answers with the reason when nothing could start: no PVC matched, or a plan cannot be evaluated", () => {
    const s = asked("req-2", grid);
    const none = decideSchedule(world(s, { selection: { targets: [], skipped: [], errors: [] } }), config, now, pendingBackupRequest(s));
    expect(none.actions).toEqual([]);
    expect(none.status.lastBackupRequest).toEqual({ id: "req-2", time: "2026-12-02T01:00:00Z", message: "No PVC matched the plans; no BackupSet was made." });
    const broken = decideSchedule(
      world(s, { selection: { targets: [], skipped: [], errors: ["plan 0: bad selector"] } }),
      config,
      now,
      pendingBackupRequest(s),
    );
    expect(broken.status.lastBackupRequest?.message).toBe("No backup started: plan 0: bad selector");
  });

  it("a run asked for by an event leaves the annotation's request pending", () => {
    const s = asked("req-3", grid);
    const d = decideSchedule(world(s), config, now, { requestId: "cloudevent-id" });
    expect(d.status.lastBackupRequest).toBeUndefined();
  });

  it("the tick takes a pending request up when the reconcile function missed its event; reconcile's own pass runs only that", () => {
    const pending = asked("req-4", grid);
    const quiet = schedule({}, grid);
    const handled = asked("req-0", { ...grid, lastBackupRequest: { id: "req-0", time: "2026-12-01T00:00:00Z", message: "m" } });
    const lists = { schedules: [pending, quiet, handled], sets: [], jobs: [] };
    expect(Object.keys(tickReads(lists, now, { requested: true }))).toEqual(["pvcs", "pods"]);
    expect(tickReads({ schedules: [quiet, handled], sets: [], jobs: [] }, now, { requested: true })).toEqual({});
    const observed = { ...lists, pvcs: [], pods: [] };
    // The clock's tick: every schedule, the pending request run as asked.
    const all = planTick(observed, config, now);
    expect(all.map((p) => [p.name, p.decision.status.lastBackupRequest?.id])).toEqual([
      ["example-schedule", "req-4"],
      ["example-schedule", undefined],
      ["example-schedule", "req-0"],
    ]);
    // The reconcile function's pass: only the pending one.
    const requested = planTick(observed, config, now, { requested: true });
    expect(requested).toHaveLength(1);
    expect(requested[0]?.decision.status.lastBackupRequest).toEqual({
      id: "req-4",
      time: "2026-12-02T01:00:00Z",
      message: "No PVC matched the plans; no BackupSet was made.",
    });
  });

  it("a schedule Walle cannot read answers the request with why", () => {
    const s = asked("req-5");
    const bad = { ...s, spec: { ...s.spec, plans: "everything" } };
    const [plan] = planTick({ schedules: [bad], sets: [], jobs: [] }, config, now, { requested: true });
    expect(plan?.decision.status.lastBackupRequest).toEqual({
      id: "req-5",
      time: "2026-12-02T01:00:00Z",
      message: expect.stringMatching(/^No backup started: The BackupSchedule is invalid: spec\.plans: /),
    });
  });
});

describe("a schedule whose BackupSet has just ended (the reconcile function's pass, scope settled)", () => {
  const now = t("2026-12-01T03:00:00Z");
  const running = {
    state: "Running" as const,
    lastBackupRun: "2026-12-01T00:02:00Z",
    nextBackupRun: "2026-12-01T06:00:00Z",
    conditions: [
      {
        type: "BackupReady",
        status: "False" as const,
        reason: "Running",
        message: "BackupSet example-schedule-20261201t000000z is Running.",
        lastTransitionTime: "2026-12-01T00:02:00Z",
      },
    ],
  };

  it.each([
    ["Finished", { state: "Finished", status: "True", reason: "Finished" }],
    ["FinishedWithFailures", { state: "FinishedWithFailures", status: "False", reason: "FinishedWithFailures" }],
  ])("its set %s: the state and BackupReady say so now, and nothing starts, goes or moves on the clock", (setState, want) => {
    // A schedule that is also due (its 6h slot passed long ago) and has an old run beyond keepSucceeded.
    const due = schedule({}, { ...running, nextBackupRun: "2026-12-01T02:00:00Z" });
    const observed = {
      schedules: [due],
      sets: [
        set("example-schedule-20261201t000000z", setState, "2026-12-01T00:02:00Z"),
        set("example-schedule-20261130t180000z", "Finished", "2026-11-30T18:02:00Z"),
      ],
      jobs: [],
    };
    expect(tickReads(observed, now, { schedule: "example-schedule", settled: true })).toEqual({});
    const [plan, ...others] = planTick(observed, config, now, { schedule: "example-schedule", settled: true });
    expect(others).toEqual([]);
    expect(plan?.decision.actions).toEqual([]);
    expect(plan?.decision.events).toEqual([]);
    expect(plan?.decision.status).toMatchObject({ state: want.state, lastBackupRun: running.lastBackupRun, nextBackupRun: "2026-12-01T02:00:00Z" });
    expect(plan?.decision.status.conditions?.find((c) => c.type === "BackupReady")).toMatchObject({
      status: want.status,
      reason: want.reason,
      message: `BackupSet example-schedule-20261201t000000z is ${setState}.`,
    });
  });

  it("looks at the one schedule named, and not at one Walle cannot read", () => {
    const other = { ...schedule({}, running), metadata: { ...schedule().metadata, name: "other" } };
    const bad = { ...schedule({}, running), metadata: { ...schedule().metadata, name: "bad" }, spec: { ...schedule().spec, plans: "everything" } };
    expect(planTick({ schedules: [other, bad], sets: [], jobs: [] }, config, now, { schedule: "example-schedule", settled: true })).toEqual([]);
    expect(planTick({ schedules: [bad], sets: [], jobs: [] }, config, now, { schedule: "bad", settled: true })).toEqual([]);
  });
});

describe("tickReads", () => {
  it("reads one list per kind: the pods, PVCs and namespaces only when a due plan needs them", () => {
    const now = t("2026-12-02T00:02:00Z");
    const first = tickReads({}, now);
    expect(Object.keys(first)).toEqual(["schedules", "sets", "jobs"]);
    const notDue = { ...schedule({}, { scheduler: { backupTimestamp: "2026-12-02T00:00:00Z" } }) };
    expect(tickReads({ schedules: Array(500).fill(notDue), sets: [], jobs: [] }, now)).toEqual({});
    const due = schedule({ plans: [{ type: "persistentVolumeClaim", namespaceSelector: { matchLabels: { a: "b" } } }] });
    expect(Object.keys(tickReads({ schedules: [notDue, due, due], sets: [], jobs: [] }, now)).sort()).toEqual(["namespaces", "pvcs"]);
  });

  it("a prune vouches for the gone workers' locks only when no worker Job of the cluster is active, in any repository", () => {
    const s = schedule({ prune: { interval: "1d", retain: { last: 3 } } }, { scheduler: { backupTimestamp: "2026-12-02T00:00:00Z" } });
    const readAt = t("2026-12-02T00:09:58Z");
    const elsewhere: Job = {
      metadata: { name: "walle-backup-other-x", namespace: "other", labels: { "ros.io/repository": "other-repo", "ros.io/backup-job-type": "backup" } },
      status: { active: 1 },
    };
    const envOf = (jobs: Job[]) => {
      const [plan] = planTick({ schedules: [s], sets: [], jobs, readAt }, config, t("2026-12-02T00:10:00Z"));
      const job = plan?.decision.actions.find((a) => a.op === "create" && a.manifest.kind === "Job");
      return JSON.stringify(job?.op === "create" ? job.manifest : undefined);
    };
    expect(envOf([])).toContain('{"name":"STALE_LOCKS_BEFORE","value":"2026-12-02T00:09:58Z"}');
    // Another repository's worker may write here too (another Secret can name the same repository): no word then.
    const withOther = envOf([elsewhere]);
    expect(withOther).toContain('"args":["prune"]');
    expect(withOther).not.toContain("STALE_LOCKS_BEFORE");
  });

  it("a schedule the API server holds but Walle cannot read says so on BackupReady and runs nothing", () => {
    const bad = { ...schedule(), spec: { ...schedule().spec, plans: "everything" } };
    const [plan] = planTick({ schedules: [bad], sets: [], jobs: [], pvcs: [] }, config, t("2026-12-02T00:02:00Z"));
    expect(plan?.decision.actions).toEqual([]);
    expect(plan?.decision.status.conditions).toEqual([
      expect.objectContaining({ type: "BackupReady", reason: "InvalidSpec", message: expect.stringContaining("spec.plans") }),
    ]);
  });
});

// kubectl walle's pure parts: its command line, kubectl's table and age styles, the progress bar, and what status
// picks from the lists.
import { describe, expect, it } from "vitest";
import { durationSeconds, parseCommandLine, UsageError } from "../../cli/options.ts";
import { humanDuration, printObjects, progressLine, table, until } from "../../cli/render.ts";
import { overview } from "../../lib/core/overview.ts";

describe("the command line", () => {
  it.each([
    {
      argv: ["backup", "data", "-n", "shop", "--repository", "repo", "--wait"],
      want: { name: "backup", pvc: "data", repository: "repo", wait: true, timeoutSeconds: 21_600, globals: { namespace: "shop", output: "table" } },
    },
    {
      argv: ["backup", "data", "--repository=repo", "--wait", "--timeout", "90s", "-o", "yaml"],
      want: { name: "backup", wait: true, timeoutSeconds: 90, globals: { output: "yaml" } },
    },
    { argv: ["backup", "--schedule", "nightly"], want: { name: "backup-schedule", schedule: "nightly", wait: false, timeoutSeconds: 120 } },
    {
      argv: ["backup", "--schedule=nightly", "--wait", "-o", "json"],
      want: { name: "backup-schedule", schedule: "nightly", wait: true, timeoutSeconds: 21_600, globals: { output: "json" } },
    },
    { argv: ["backup", "--schedule", "nightly", "--timeout", "10m"], want: { name: "backup-schedule", wait: false, timeoutSeconds: 600 } },
    {
      argv: ["restore", "data", "--to", "data-2", "--repository", "repo", "--path", "/db", "--path", "/etc"],
      want: { name: "restore", to: "data-2", inPlace: false, paths: ["/db", "/etc"] },
    },
    {
      argv: ["restore", "data", "--in-place", "--force", "--before", "2026-12-01T00:00:00Z", "--repository", "repo"],
      want: { name: "restore", inPlace: true, force: true, before: "2026-12-01T00:00:00Z" },
    },
    {
      argv: ["snapshots", "data", "--repository", "repo", "--worker-image", "registry.local/walle-worker:1"],
      want: { name: "snapshots", pvc: "data", repository: "repo", workerImage: "registry.local/walle-worker:1", timeoutSeconds: 300 },
    },
    { argv: ["status", "-A", "--no-headers"], want: { name: "status", globals: { allNamespaces: true, noHeaders: true } } },
    { argv: ["backup", "--help"], want: { name: "help", topic: "backup" } },
    { argv: [], want: { name: "help" } },
  ])("$argv", ({ argv, want }) => {
    expect(parseCommandLine(argv)).toMatchObject(want);
  });

  it.each([
    { argv: ["snapshot"], says: 'unknown command "snapshot": the commands are backup, restore, snapshots and status' },
    { argv: ["snapshots", "data"], says: "snapshots needs --repository <secret>: the repository Secret in the PVC's namespace" },
    { argv: ["backup", "--repository", "r"], says: "backup needs the PVC: kubectl walle backup <pvc>" },
    { argv: ["backup", "data"], says: "backup needs --repository <secret>: the repository Secret in the PVC's namespace" },
    { argv: ["backup", "data", "extra", "--repository", "r"], says: 'backup takes one PVC, not also "extra"' },
    { argv: ["backup", "data", "--repository", "r", "--colour"], says: "Unknown option '--colour'" },
    { argv: ["backup", "data", "--repository", "r", "--wait", "--timeout", "soon"], says: '--timeout must be a duration such as 90s, 30m or 2h, not "soon"' },
    { argv: ["backup", "data", "--repository", "r", "-A"], says: "--all-namespaces applies to status only" },
    { argv: ["backup", "data", "--repository", "r", "--timeout", "1h"], says: "--timeout says how long --wait waits: give --wait too" },
    { argv: ["backup", "data", "--schedule", "nightly"], says: 'backup --schedule runs the PVCs its plans select; give no PVC ("data")' },
    { argv: ["backup", "--schedule", "nightly", "--repository", "r"], says: "backup --schedule uses the schedule's own repository; drop --repository" },
    { argv: ["backup", "--schedule", "nightly", "-n", "shop"], says: "BackupSchedules are cluster-scoped: -n does not apply to backup --schedule" },
    { argv: ["backup", "--schedule", ""], says: "--schedule needs the BackupSchedule's name" },
    { argv: ["status", "-o", "wide"], says: '--output must be table, json or yaml, not "wide"' },
    { argv: ["restore", "data", "--repository", "r"], says: "restore needs exactly one of --to <new-pvc> and --in-place" },
    { argv: ["restore", "data", "--to", "x", "--in-place", "--repository", "r"], says: "restore needs exactly one of --to <new-pvc> and --in-place" },
    { argv: ["restore", "data", "--to", "x", "--force", "--repository", "r"], says: "--force applies to --in-place only: a new PVC is mounted by no one" },
    {
      argv: ["restore", "data", "--to", "x", "--snapshot", "ab12cd34", "--before", "2026-01-01T00:00:00Z", "--repository", "r"],
      says: "give --snapshot or --before, not both",
    },
  ])("refuses $argv", ({ argv, says }) => {
    expect(() => parseCommandLine(argv)).toThrow(UsageError);
    expect(() => parseCommandLine(argv)).toThrow(says);
  });

  it.each([
    ["90s", 90],
    ["30m", 1800],
    ["1h30m", 5400],
    ["", undefined],
    ["1d", undefined],
  ] as const)("reads the duration %j as %j seconds", (text, seconds) => {
    expect(durationSeconds(text)).toBe(seconds);
  });
});

describe("printing as kubectl does", () => {
  const rows = [
    { name: "nightly", state: "Finished" },
    { name: "a-much-longer-name", state: "" },
  ];
  const columns = [
    { header: "name", value: (r: (typeof rows)[number]) => r.name },
    { header: "state", value: (r: (typeof rows)[number]) => r.state },
  ];

  it("pads each column to its widest cell, three spaces apart, and marks empty cells <none>", () => {
    expect(table(columns, rows)).toBe(["NAME                 STATE", "nightly              Finished", "a-much-longer-name   <none>"].join("\n"));
    expect(table(columns, rows, { noHeaders: true }).split("\n")).toHaveLength(2);
  });

  it("prints one object alone and several as a v1 List", () => {
    expect(JSON.parse(printObjects([{ kind: "BackupJob" }], "json"))).toEqual({ kind: "BackupJob" });
    expect(printObjects([{ kind: "A" }, { kind: "B" }], "yaml")).toBe(
      'apiVersion: v1\nkind: List\nitems:\n  - kind: A\n  - kind: B\nmetadata:\n  resourceVersion: ""',
    );
  });

  it.each([
    [45_000, "45s"],
    [200_000, "3m20s"],
    [17 * 60_000, "17m"],
    [(5 * 60 + 30) * 60_000, "5h30m"],
    [30 * 3_600_000, "30h"],
    [(3 * 24 + 4) * 3_600_000, "3d4h"],
    [12 * 24 * 3_600_000, "12d"],
    [(2 * 365 + 40) * 24 * 3_600_000, "2y40d"],
  ] as const)("ages %j ms as %s", (ms, text) => {
    expect(humanDuration(ms)).toBe(text);
  });

  it("says when a run is next, or that it is due", () => {
    const now = new Date("2026-12-04T10:00:00Z");
    expect(until("2026-12-04T15:30:00Z", now)).toBe("in 5h30m");
    expect(until("2026-12-04T09:00:00Z", now)).toBe("due");
    expect(until(undefined, now)).toBe("");
  });

  it.each([
    {
      p: { percent: 42, bytesDone: 44_040_192, totalBytes: 104_857_600, filesDone: 120, totalFiles: 300, secondsRemaining: 80 },
      want: "[#############.................]   42%  42.0 MiB / 100.0 MiB  120 / 300 files  ETA 80s",
    },
    { p: { percent: 0 }, want: "[..............................]    0%" },
    { p: { percent: 100, bytesDone: 512 }, want: "[##############################]  100%  512 B" },
  ])("draws progress $p.percent%", ({ p, want }) => {
    expect(progressLine(p)).toBe(want);
    expect(progressLine(p, { color: true })).toContain("\x1b[32m");
  });
});

describe("what status shows", () => {
  const cond = (reason: string, message = "") => [{ type: "BackupReady", status: "False", reason, message }];
  const o = overview({
    schedules: [
      {
        metadata: { name: "weekly" },
        spec: { schedule: "0 2 * * 0", suspend: true },
        status: { state: "Finished", lastBackupRun: "2026-12-01T02:00:00Z", nextBackupRun: "2026-12-08T02:00:00Z" },
      },
      {
        metadata: { name: "nightly" },
        spec: { interval: "24h" },
        status: { state: "Running", nextBackupRun: "2026-12-05T02:00:00Z", conditions: cond("Running") },
      },
      { metadata: { name: "broken" }, spec: { interval: "6h" }, status: { conditions: cond("InvalidPlan", "plans[0].fieldSelector: bad") } },
    ],
    sets: [
      { metadata: { name: "nightly-20261204t020000z", labels: { "ros.io/backup-schedule": "nightly" } }, status: { state: "Running", completions: "3/5" } },
      { metadata: { name: "nightly-20261203t020000z" }, status: { state: "Finished", completions: "5/5" } },
    ],
    jobs: [
      {
        metadata: { name: "old", namespace: "a" },
        spec: { sourcePvc: "x" },
        status: {
          phase: "Failed",
          finishTime: "2026-12-01T00:00:00Z",
          conditions: [{ type: "BackupState", status: "False", reason: "WrongPassword", message: "The repository password is wrong" }],
        },
      },
      { metadata: { name: "new", namespace: "b" }, spec: { sourcePvc: "y" }, status: { phase: "Failed", finishTime: "2026-12-03T00:00:00Z" } },
      { metadata: { name: "fine", namespace: "a" }, status: { phase: "Finished" } },
    ],
  });

  it("every schedule by name, a suspended one with no next run, a broken one with why", () => {
    expect(o.schedules).toEqual([
      { name: "broken", state: "Waiting", every: "6h", problem: "InvalidPlan: plans[0].fieldSelector: bad" },
      { name: "nightly", state: "Running", every: "24h", nextBackupRun: "2026-12-05T02:00:00Z" },
      { name: "weekly", state: "Suspended", every: "0 2 * * 0", lastBackupRun: "2026-12-01T02:00:00Z" },
    ]);
  });

  it("only the sets still running, and the failed BackupJobs newest first with their reason", () => {
    expect(o.runningSets).toEqual([{ name: "nightly-20261204t020000z", schedule: "nightly", completions: "3/5" }]);
    expect(o.failedJobs.map((j) => [j.name, j.reason, j.message])).toEqual([
      ["new", "Failed", ""],
      ["old", "WrongPassword", "The repository password is wrong"],
    ]);
  });
});

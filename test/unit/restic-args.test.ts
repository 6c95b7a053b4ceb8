import { describe, expect, it } from "vitest";
import {
  backupArgs,
  catLockArgs,
  checkArgs,
  forgetArgs,
  initArgs,
  listLocksArgs,
  pruneArgs,
  resticEnvironment,
  restoreArgs,
  snapshotsArgs,
  snapshotTags,
  unlockArgs,
} from "../../lib/restic/args.ts";

const owner = { pvc: "data", namespace: "shop" };

describe("restic command lines", () => {
  it.each([
    {
      name: "backup with time, schedule and lock wait",
      args: backupArgs({
        host: "prod",
        owner: { ...owner, schedule: "nightly" },
        sourcePath: "/source",
        time: new Date("2024-05-01T02:03:04.567Z"),
        lockWait: "5m",
      }),
      want: [
        "backup",
        "--json",
        "--retry-lock",
        "5m",
        "--host",
        "prod",
        "--group-by",
        "host,tags",
        "--tag",
        "pvc=data,namespace=shop,schedule=nightly",
        "--time",
        "2024-05-01 02:03:04",
        "--exclude",
        "/source/lost+found",
        ".",
      ],
    },
    {
      name: "backup at restic's own time",
      args: backupArgs({ host: "prod", owner, sourcePath: "/mnt/snap/" }),
      want: ["backup", "--json", "--host", "prod", "--group-by", "host,tags", "--tag", "pvc=data,namespace=shop", "--exclude", "/mnt/snap/lost+found", "."],
    },
    { name: "init", args: initArgs(), want: ["init", "--json"] },
    {
      name: "snapshots of one PVC",
      args: snapshotsArgs({ host: "prod", owner }),
      want: ["snapshots", "--json", "--host", "prod", "--tag", "pvc=data,namespace=shop"],
    },
    {
      name: "restore with includes",
      args: restoreArgs({ snapshotId: "abcd1234", targetPath: "/target", include: ["/db", "/conf d"] }),
      want: ["restore", "abcd1234", "--json", "--target", "/target", "--sparse", "--include", "/db", "--include", "/conf d"],
    },
    {
      name: "restore replacing the target keeps its lost+found",
      args: restoreArgs({ snapshotId: "abcd1234", targetPath: "/target", deleteOthers: true, lockWait: "5m" }),
      want: ["restore", "abcd1234", "--json", "--retry-lock", "5m", "--target", "/target", "--sparse", "--delete", "--exclude", "/lost+found"],
    },
    {
      name: "restore replacing only the included paths (restic refuses --exclude beside --include)",
      args: restoreArgs({ snapshotId: "abcd1234", targetPath: "/target", deleteOthers: true, include: ["/db"] }),
      want: ["restore", "abcd1234", "--json", "--target", "/target", "--sparse", "--delete", "--include", "/db"],
    },
    {
      name: "forget of one schedule",
      args: forgetArgs({ host: "prod", schedule: "nightly", policy: { daily: 7, weekly: 4, within: "2d" }, lockWait: "1m" }),
      want: [
        "forget",
        "--json",
        "--retry-lock",
        "1m",
        "--group-by",
        "host,tags",
        "--host",
        "prod",
        "--tag",
        "schedule=nightly",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-within",
        "2d",
      ],
    },
    {
      name: "forget of every schedule",
      args: forgetArgs({ host: "prod", policy: { last: 3 } }),
      want: ["forget", "--json", "--group-by", "host,tags", "--host", "prod", "--keep-last", "3"],
    },
    { name: "prune", args: pruneArgs({ lockWait: "5m" }), want: ["prune", "--json", "--retry-lock", "5m"] },
    { name: "check", args: checkArgs(), want: ["check", "--json"] },
    { name: "check with a subset", args: checkArgs({ readDataSubset: "5%" }), want: ["check", "--json", "--read-data-subset", "5%"] },
    { name: "unlock removes only stale locks", args: unlockArgs(), want: ["unlock", "--json"] },
    { name: "a PVC's snapshots of every cluster", args: snapshotsArgs({ owner }), want: ["snapshots", "--json", "--tag", "pvc=data,namespace=shop"] },
    { name: "unlock of every lock", args: unlockArgs({ removeAll: true }), want: ["unlock", "--json", "--remove-all"] },
    { name: "the locks listed, without a lock", args: listLocksArgs(), want: ["list", "locks", "--no-lock"] },
    { name: "one lock read, without a lock", args: catLockArgs("ab12"), want: ["cat", "lock", "ab12", "--no-lock"] },
  ])("$name", ({ args, want }) => {
    expect(args).toEqual(want);
  });

  it("never puts the repository or a password on the command line", () => {
    const all = [
      backupArgs({ host: "h", owner, sourcePath: "/s" }),
      restoreArgs({ snapshotId: "x", targetPath: "/t" }),
      forgetArgs({ host: "h", policy: { last: 1 } }),
      pruneArgs(),
      checkArgs(),
    ].flat();
    expect(all.filter((a) => /^(-r|--repo|--repository|--password)/.test(a))).toEqual([]);
  });
});

describe("snapshot tags", () => {
  it.each([
    { owner, want: ["pvc=data", "namespace=shop"] },
    { owner: { pvc: "shop", namespace: "data" }, want: ["pvc=shop", "namespace=data"] },
    { owner: { ...owner, schedule: "hourly" }, want: ["pvc=data", "namespace=shop", "schedule=hourly"] },
  ])("tags $owner as $want", ({ owner: o, want }) => {
    expect(snapshotTags(o)).toEqual(want);
  });
});

describe("restic's environment", () => {
  it("passes the Secret's variables through, in UTC, with one status line a second", () => {
    const env = resticEnvironment({ RESTIC_REPOSITORY: "s3:x", AWS_ACCESS_KEY_ID: "id", TZ: "Europe/Berlin", UNSET: undefined });
    expect(env).toEqual({ RESTIC_REPOSITORY: "s3:x", AWS_ACCESS_KEY_ID: "id", TZ: "UTC", RESTIC_PROGRESS_FPS: "1" });
  });

  it("keeps a progress rate the Secret chose", () => {
    expect(resticEnvironment({ RESTIC_PROGRESS_FPS: "0.2" }).RESTIC_PROGRESS_FPS).toBe("0.2");
  });
});

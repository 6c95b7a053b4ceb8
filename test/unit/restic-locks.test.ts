import { describe, expect, it } from "vitest";
import { isWorkerHostname, judgeLock, unlockPlan, workerHostname, type ResticLock } from "../../lib/restic/locks.ts";

const cluster = "prod";
const job = "walle-backup-shop-nightly-20261204t020000z-data-3f9a2c";
const own = workerHostname(cluster, job);
const other = workerHostname(cluster, "walle-backup-shop-nightly-20261204t020000z-logs-77aa01");
const quiet = new Date("2026-12-04T10:00:00Z");
const lock = (hostname: string, time: string, exclusive = false): ResticLock => ({ hostname, time, exclusive, pid: 7 });

describe("worker hostnames", () => {
  it.each([
    { name: "a short Job name stays readable", job: "walle-prune-nightly-20261204t020000z" },
    { name: "a Job name of 63 characters is cut, and stays a label", job: `walle-backup-${"a".repeat(50)}` },
    { name: "upper case and dots become a label", job: "walle-check-Team.A" },
  ])("$name", ({ job }) => {
    const h = workerHostname(cluster, job);
    expect(h.length).toBeLessThanOrEqual(63);
    expect(h).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    expect(isWorkerHostname(cluster, h)).toBe(true);
  });

  it("differ between Jobs whose names share the first 47 characters", () => {
    const prefix = `walle-backup-${"b".repeat(40)}`;
    expect(workerHostname(cluster, `${prefix}-one`)).not.toBe(workerHostname(cluster, `${prefix}-two`));
  });

  it.each([
    { name: "another cluster's worker", hostname: workerHostname("staging", job) },
    { name: "a pod's default hostname", hostname: "walle-backup-shop-data-3f9a2c-x7k2p" },
    { name: "a workstation", hostname: "laptop" },
  ])("are told from $name", ({ hostname }) => {
    expect(isWorkerHostname(cluster, hostname)).toBe(false);
  });
});

describe("which locks are a gone worker's", () => {
  it.each([
    {
      name: "an earlier attempt of this Job, even exclusive and recent",
      lock: lock(own, "2026-12-04T11:00:00Z", true),
      staleBefore: undefined,
      stale: true,
      why: /earlier attempt/,
    },
    {
      name: "another worker of this cluster taken before the quiet moment",
      lock: lock(other, "2026-12-04T09:59:59.5Z"),
      staleBefore: quiet,
      stale: true,
      why: /before 2026-12-04T10:00:00.000Z/,
    },
    {
      name: "another worker of this cluster taken after it",
      lock: lock(other, "2026-12-04T10:00:01Z"),
      staleBefore: quiet,
      stale: false,
      why: /may belong to a worker that still runs/,
    },
    {
      name: "another worker of this cluster, with no quiet moment vouched for",
      lock: lock(other, "2026-12-04T08:00:00Z"),
      staleBefore: undefined,
      stale: false,
      why: /still runs/,
    },
    {
      name: "another cluster's worker, however old",
      lock: lock(workerHostname("staging", job), "2020-01-01T00:00:00Z"),
      staleBefore: quiet,
      stale: false,
      why: /not a Walle worker's of this cluster/,
    },
    {
      name: "a person's restic",
      lock: lock("laptop", "2020-01-01T00:00:00Z", true),
      staleBefore: quiet,
      stale: false,
      why: /exclusive lock of laptop \(PID 7\)/,
    },
    { name: "a time restic did not write", lock: lock(other, "yesterday"), staleBefore: quiet, stale: false, why: /still runs/ },
  ])("$name", ({ lock: l, staleBefore, stale, why }) => {
    const j = judgeLock("id", l, { clusterName: cluster, ownHostname: own, ...(staleBefore ? { staleBefore } : {}) });
    expect(j.stale).toBe(stale);
    expect(j.why).toMatch(why);
  });

  it("keeps a lock whose content could not be read", () => {
    expect(judgeLock("id", undefined, { clusterName: cluster, ownHostname: own })).toMatchObject({ stale: false, why: "its content could not be read" });
  });
});

describe("removing them", () => {
  const gone = { id: "a", stale: true, why: "gone" };
  const live = { id: "b", stale: false, why: "live" };
  it.each([
    { name: "all gone: removed together", judged: [gone, { ...gone, id: "c" }], removeAll: true, stale: 2, kept: 0 },
    { name: "one live among them: none removed", judged: [gone, live], removeAll: false, stale: 1, kept: 1 },
    { name: "only live ones", judged: [live], removeAll: false, stale: 0, kept: 1 },
    { name: "no locks", judged: [], removeAll: false, stale: 0, kept: 0 },
  ])("$name", ({ judged, removeAll, stale, kept }) => {
    const plan = unlockPlan(judged);
    expect({ removeAll: plan.removeAll, stale: plan.stale.length, kept: plan.kept.length }).toEqual({ removeAll, stale, kept });
  });
});

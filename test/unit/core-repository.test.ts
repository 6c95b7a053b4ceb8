// Turns at a repository: which waiting BackupJobs a finished worker wakes, and which Job events end a prune's hold.
import { describe, expect, it } from "vitest";
import { endsMaintenance, planWake } from "../../lib/core/repository.ts";

const waiting = (name: string, at: string, reason = "RepositoryBusy", phase = "CreatingSnapshot") => ({
  metadata: { namespace: "app", name, creationTimestamp: at },
  status: { phase, conditions: [{ type: "BackupState", status: "False", reason }] },
});

describe("planWake", () => {
  it("wakes the BackupJobs waiting longest for a turn, no more than can start at once", () => {
    const jobs = [
      waiting("c", "2026-12-02T00:03:00Z"),
      waiting("a", "2026-12-02T00:01:00Z"),
      waiting("x", "2026-12-02T00:00:00Z", "Creating"),
      waiting("b", "2026-12-02T00:02:00Z"),
      waiting("y", "2026-12-02T00:00:00Z", "RepositoryBusy", "BackingUp"),
    ];
    expect(planWake(jobs, 2)).toEqual([
      { namespace: "app", name: "a" },
      { namespace: "app", name: "b" },
    ]);
  });
});

describe("endsMaintenance", () => {
  const job = (type: string, conditions: { type: string; status: string }[]) => ({
    kind: "Job",
    metadata: { name: "j", labels: { "ros.io/backup-job-type": type } },
    status: { conditions },
  });
  it.each([
    [job("prune", [{ type: "Complete", status: "True" }]), true],
    [job("check", [{ type: "Failed", status: "True" }]), true],
    [job("prune", []), false],
    [job("backup", [{ type: "Complete", status: "True" }]), false],
  ])("%j → %s", (obj, expected) => expect(endsMaintenance(obj)).toBe(expected));
});

// The local node agent's CSI driver against csi-sanity (github.com/kubernetes-csi/csi-test/v5), the CSI spec's own
// conformance tests: every Identity and Controller test passes. Its Node tests are left to csi-sanity's skip flag (the
// real kubelet publishes volumes through the Node service in the cluster tests), and that they were the only ones
// skipped is checked.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { CsiDriver, serveCsi, type CsiServer } from "../../cluster/csi-driver.ts";
import { tempDir } from "./worker-harness.ts";

const run = promisify(execFile);
let dir: string;
let server: CsiServer;

beforeAll(async () => {
  dir = await tempDir("csi");
  const driver = new CsiDriver({
    volumesDir: path.join(dir, "volumes"),
    snapshotsDir: path.join(dir, "snapshots"),
    stateFile: path.join(dir, "csi-state.json"),
  });
  await driver.init();
  server = await serveCsi(driver, path.join(dir, "csi.sock"));
});
afterAll(async () => server?.stop());

interface JUnitCounts {
  tests: number;
  failures: number;
  errors: number;
  skipped: number;
}

function counts(xml: string): JUnitCounts {
  const attr = (name: string) => Number(new RegExp(`<testsuite [^>]*\\b${name}="(\\d+)"`).exec(xml)?.[1] ?? NaN);
  return { tests: attr("tests"), failures: attr("failures"), errors: attr("errors"), skipped: attr("skipped") };
}

describe("csi-sanity", () => {
  it("passes every Identity and Controller test against the node agent's CSI server", async () => {
    const report = path.join(dir, "junit.xml");
    const result = await run(
      inject("csiSanity"),
      [
        `--csi.endpoint=unix://${server.socket}`,
        `--csi.mountdir=${path.join(dir, "mount")}`,
        `--csi.stagingdir=${path.join(dir, "staging")}`,
        "--ginkgo.skip=Node Service",
        `--ginkgo.junit-report=${report}`,
        "--ginkgo.no-color",
      ],
      { maxBuffer: 64 * 1024 * 1024 },
    ).then(
      (r) => ({ code: 0, output: r.stdout + r.stderr }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? 1, output: `${e.stdout ?? ""}${e.stderr ?? ""}` }),
    );
    const xml = await readFile(report, "utf8");
    const failed = [...xml.matchAll(/<testcase name="([^"]+)"[^>]*>\s*<failure message="([^"]*)"/g)].map((m) => `${m[1]}: ${(m[2] ?? "").slice(0, 300)}`);
    expect({ code: result.code, failed }, result.output.slice(-4000)).toEqual({ code: 0, failed: [] });
    const c = counts(xml);
    expect(c.failures + c.errors).toBe(0);
    // What ran: the Identity tests, and CreateVolume (empty, from a snapshot, cloned), DeleteVolume,
    // ValidateVolumeCapabilities, CreateSnapshot, ListSnapshots (by id, by volume, paged) and DeleteSnapshot, each with
    // its idempotency and argument checks.
    expect(c.tests - c.skipped).toBeGreaterThanOrEqual(38);
    // Every skipped test is a Node Service test, one for a capability the driver does not claim (csi-sanity skips
    // those itself), or the volume lifecycle, which publishes on a node.
    const skipped = [...xml.matchAll(/<testcase name="([^"]+)"[^>]*>\s*<skipped/g)].map((m) => m[1] ?? "");
    const unclaimed =
      /^\[It\] (Node Service|ModifyVolume|GetSnapshot|ExpandVolume|GroupController|ControllerGetVolumeHealth|ControllerListVolumeHealth) |Controller Server\] (ListVolumes|GetCapacity|ControllerPublishVolume|ControllerUnpublishVolume|volume lifecycle) |volume attribute class|accessibility requirements/;
    expect(skipped.filter((name) => !unclaimed.test(name))).toEqual([]);
  }, 600_000);
});

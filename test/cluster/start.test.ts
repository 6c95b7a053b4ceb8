// `npm start -- --once`, as a user runs it: its own local cluster, Walle with the getting-started schedule on a real
// rest-server with htpasswd, the tick fired by KEDA, one scheduled backup of the example workload, the repository's
// snapshot list, exit 0, and everything it started stopped.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../../cluster/toolchain.ts";

describe("npm start -- --once", () => {
  it("backs up the example on schedule, lists the snapshot and exits 0", async () => {
    const env = { ...process.env };
    delete env.WALLE_CLUSTER_DIR;
    const child = spawn(process.execPath, [path.join(repoRoot, "scripts", "start.ts"), "--once"], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"], env });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
    expect(code, out).toBe(0);
    const lines = out.split("\n");
    expect(lines).toContainEqual(expect.stringMatching(/^walle: BackupSet example-schedule-[0-9a-z]+: Finished 1\/1$/));
    const id = /^walle: BackupJob default\/\S+: restic snapshot ([0-9a-f]{64})$/m.exec(out)?.[1];
    expect(id, out).toBeDefined();
    // restic's own table: the new snapshot by its short id, of this cluster's host, with the PVC's path.
    const row = lines.find((l) => l.startsWith(id?.slice(0, 8) ?? "-"));
    expect(row, out).toMatch(/walle-local/);
    expect(out).toMatch(/^1 snapshots$/m);
    // Everything it started is gone with its state directory.
    const state = /^walle: the cluster's state is in (\/\S+)$/m.exec(out)?.[1];
    expect(state, out).toBeDefined();
    expect(existsSync(state ?? "/")).toBe(false);
  }, 900_000);
});

// Progress as CloudEvents to a sink, best effort: a sink that is down or never answers does not fail the backup.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProgressData } from "../../lib/restic/progress.ts";
import { noise, publicRestic, restic, runWorker, tempDir, type Env } from "./worker-harness.ts";

let dir: string;
let env: Env;

beforeAll(async () => {
  dir = await tempDir("progress");
  env = {
    RESTIC_BINARY: await publicRestic(dir),
    RESTIC_REPOSITORY: path.join(dir, "repo"),
    RESTIC_PASSWORD: "pw",
    CLUSTER_NAME: "test-cluster",
    PVC_NAME: "orders",
    PVC_NAMESPACE: "shop",
    PROGRESS_INTERVAL: "0s",
    RESTIC_PROGRESS_FPS: "20",
  };
  await restic(["init"], env);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** New data for each backup: an incremental backup of unchanged data may end before restic's first status. */
async function freshSource(): Promise<Env> {
  const source = await mkdtemp(path.join(dir, "source-"));
  for (let i = 0; i < 20; i++) await writeFile(path.join(source, `f${i}.bin`), noise(2 * 1024 * 1024));
  return { SOURCE_PATH: source };
}

async function listen(
  handler: (headers: IncomingHttpHeaders, body: string, respond: (status: number) => void) => void,
): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => handler(req.headers, body, (status) => res.writeHead(status).end()));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}/progress`, server };
}

describe("progress sink", () => {
  it("receives binary-mode CloudEvents with the backup's progress", async () => {
    const events: { headers: IncomingHttpHeaders; data: unknown }[] = [];
    const { url, server } = await listen((headers, body, respond) => {
      events.push({ headers, data: JSON.parse(body) });
      respond(202);
    });
    const subject = "/apis/ros.io/v1/namespaces/shop/backupjobs/orders-1";
    const run = await runWorker("backup", { ...env, ...(await freshSource()), PROGRESS_SINK_URL: url, PROGRESS_SUBJECT: subject });
    server.close();

    expect(run.result.outcome).toBe("Succeeded");
    expect(events.length).toBeGreaterThan(0);
    for (const e of events) {
      expect(e.headers).toMatchObject({
        "ce-specversion": "1.0",
        "ce-type": "io.ros.walle.backup.progress",
        "ce-source": "/walle/worker",
        "ce-subject": subject,
      });
      expect(e.headers["content-type"]).toContain("application/json");
      expect(ProgressData.safeParse(e.data).success).toBe(true);
    }
    expect(new Set(events.map((e) => e.headers["ce-id"])).size).toBe(events.length);
    expect(run.logs.some((l) => String(l.msg).startsWith("Backup at"))).toBe(true);
  });

  it("does not fail the backup when the sink is down", async () => {
    const run = await runWorker("backup", { ...env, ...(await freshSource()), PROGRESS_SINK_URL: "http://127.0.0.1:9/progress" });
    expect(run.result.outcome).toBe("Succeeded");
    expect(run.logs.some((l) => l.msg === "Progress sink did not accept progress; progress continues in the log only.")).toBe(true);
  });

  it("does not hold the job open for a sink that never answers", async () => {
    let received = 0;
    const { url, server } = await listen(() => received++);
    const source = await freshSource();
    const started = Date.now();
    const run = await runWorker("backup", { ...env, ...source, PROGRESS_SINK_URL: url });
    const took = Date.now() - started;
    server.closeAllConnections();
    server.close();
    expect(run.result.outcome).toBe("Succeeded");
    expect(received).toBeGreaterThan(0);
    // Unanswered POSTs are skipped over while restic runs and abandoned a second after it ends.
    expect(took).toBeLessThan(15_000);
  });
});

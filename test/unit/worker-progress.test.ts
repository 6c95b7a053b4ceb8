import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { describe, expect, it, vi } from "vitest";
import { ProgressReporter, progressMessage } from "../../functions/worker/progress.ts";

const silent = pino({ level: "silent" });

function recorder(respond: () => Promise<Response>) {
  const posts: { url: string; headers: Record<string, string>; body: unknown }[] = [];
  const post = (async (url: string | URL | Request, init?: RequestInit) => {
    posts.push({ url: String(url), headers: init?.headers as Record<string, string>, body: JSON.parse(String(init?.body)) });
    return respond();
  }) as typeof fetch;
  return { posts, post };
}

describe("progress CloudEvent", () => {
  it("is binary mode with the progress as JSON data", async () => {
    const { headers, body } = await progressMessage("backup", { percentDone: 0.5, bytesDone: 5 }, "/apis/ros.io/v1/namespaces/shop/backupjobs/data-1");
    expect(headers).toMatchObject({
      "ce-specversion": "1.0",
      "ce-type": "io.ros.walle.backup.progress",
      "ce-source": "/walle/worker",
      "ce-subject": "/apis/ros.io/v1/namespaces/shop/backupjobs/data-1",
      "content-type": expect.stringContaining("application/json"),
    });
    expect(headers["ce-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.parse(body)).toEqual({ percentDone: 0.5, bytesDone: 5 });
  });

  it("names restore progress as such and leaves out an absent subject", async () => {
    const { headers } = await progressMessage("restore", { percentDone: 1 });
    expect(headers["ce-type"]).toBe("io.ros.walle.restore.progress");
    expect(headers).not.toHaveProperty("ce-subject");
  });
});

describe("progress reporter", () => {
  it("reports at most once per interval", async () => {
    let now = 0;
    const { posts, post } = recorder(async () => new Response(null, { status: 202 }));
    const r = new ProgressReporter({ kind: "backup", intervalMs: 10_000, log: silent, sink: { url: "http://sink/" }, now: () => now, post });
    for (const [t, p] of [
      [0, 0.1],
      [5_000, 0.2],
      [9_999, 0.3],
      [10_000, 0.4],
      [25_000, 0.5],
    ] as const) {
      now = t;
      r.report({ percentDone: p });
      await r.close();
    }
    expect(posts.map((p) => (p.body as { percentDone: number }).percentDone)).toEqual([0.1, 0.4, 0.5]);
  });

  it("sends the pod's progress token, read afresh for each report, as the kubelet rotates it", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "progress-token-"));
    const file = path.join(dir, "token");
    const { posts, post } = recorder(async () => new Response(null, { status: 200 }));
    const r = new ProgressReporter({ kind: "backup", intervalMs: 0, log: silent, sink: { url: "http://sink/", tokenFile: file }, post });
    await writeFile(file, "first-token\n");
    r.report({ percentDone: 0.1 });
    await r.close();
    await writeFile(file, "rotated-token");
    r.report({ percentDone: 0.2 });
    await r.close();
    expect(posts.map((p) => p.headers.authorization)).toEqual(["Bearer first-token", "Bearer rotated-token"]);
    await rm(dir, { recursive: true, force: true });
  });

  it("skips the sink while a POST is still in flight", async () => {
    let now = 0;
    let release: () => void = () => {};
    const { posts, post } = recorder(() => new Promise((resolve) => (release = () => resolve(new Response(null)))));
    const r = new ProgressReporter({ kind: "backup", intervalMs: 1, log: silent, sink: { url: "http://sink/" }, now: () => now, post });
    r.report({ percentDone: 0.1 });
    await vi.waitFor(() => expect(posts).toHaveLength(1));
    now = 10;
    r.report({ percentDone: 0.2 });
    release();
    await r.close();
    expect(posts).toHaveLength(1);
  });

  it("never throws when the sink is down", async () => {
    const post = (async () => {
      throw new TypeError("fetch failed");
    }) as typeof fetch;
    const r = new ProgressReporter({ kind: "backup", intervalMs: 0, log: silent, sink: { url: "http://sink/" }, post });
    r.report({ percentDone: 0.1 });
    await expect(r.close()).resolves.toBeUndefined();
  });

  it("posts nothing without a sink", async () => {
    const { posts, post } = recorder(async () => new Response(null));
    const r = new ProgressReporter({ kind: "backup", intervalMs: 0, log: silent, post });
    r.report({ percentDone: 0.1 });
    await r.close();
    expect(posts).toEqual([]);
  });
});

describe("closing the reporter", () => {
  it("abandons a POST the sink never answers, after a short grace", async () => {
    const post = ((_url: string | URL | Request, init?: RequestInit) =>
      new Promise<Response>((_resolve, reject) => init?.signal?.addEventListener("abort", () => reject(new Error("aborted"))))) as typeof fetch;
    const r = new ProgressReporter({ kind: "backup", intervalMs: 0, log: silent, sink: { url: "http://sink/" }, post });
    r.report({ percentDone: 0.1 });
    const started = Date.now();
    await r.close();
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});

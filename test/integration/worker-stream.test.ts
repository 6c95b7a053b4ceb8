// The backup of a command's output, on the worker's side: it fetches the stream from the reconcile function (here
// an HTTP server that answers as lib/app/receiver.ts does: the output as the body, how the command ended in the
// trailers) with its pod's token, and pipes it into real restic's backup --stdin. Saved only when the command
// exited 0; otherwise restic is stopped before its input ends, and the repository holds nothing new.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StreamTrailer } from "../../lib/api/constants.ts";
import { listSnapshots, publicRestic, restic, runWorker, startRestServer, tempDir, type Env, type RestServer } from "./worker-harness.ts";

let rest: RestServer;
let base: Env;
let function_: Server;
let url: string;
const asked: { path: string; authorization: string | undefined }[] = [];
/** What the "function" answers next: the chunks of output, then the command's exit code and stderr. */
let answer: { chunks: string[]; exitCode: string; error: string; status?: number } = { chunks: [], exitCode: "0", error: "" };

beforeAll(async () => {
  const dir = await tempDir("stream");
  rest = await startRestServer({ dataDir: path.join(dir, "rest"), users: { alice: "alice-pw" } });
  const tokenFile = path.join(dir, "token");
  await writeFile(tokenFile, "the-pods-projected-token\n");
  function_ = createServer((req: IncomingMessage, res) => {
    asked.push({ path: req.url ?? "", authorization: req.headers.authorization });
    if (answer.status) {
      res
        .writeHead(answer.status, { "content-type": "application/json" })
        .end(JSON.stringify({ error: "BackupJob shop/db-dump is backing up no command's output now" }));
      return;
    }
    res.writeHead(200, { "content-type": "application/octet-stream", trailer: `${StreamTrailer.ExitCode}, ${StreamTrailer.Error}` });
    const chunks = [...answer.chunks];
    const next = () => {
      const c = chunks.shift();
      if (c !== undefined) {
        res.write(c);
        setTimeout(next, 20);
        return;
      }
      res.addTrailers({ [StreamTrailer.ExitCode]: answer.exitCode, [StreamTrailer.Error]: encodeURIComponent(answer.error) });
      res.end();
    };
    next();
  });
  await new Promise<void>((resolve) => function_.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(function_.address() as AddressInfo).port}/streams/shop/db-dump`;
  base = {
    RESTIC_BINARY: await publicRestic(dir),
    RESTIC_REPOSITORY: rest.repository("alice", "alice-pw", "dumps"),
    RESTIC_PASSWORD: "pw",
    INITIALIZE_REPO: "true",
    CLUSTER_NAME: "test-cluster",
    STREAM_URL: url,
    STDIN_FILENAME: "db.postgres.stdout",
    PROGRESS_TOKEN_FILE: tokenFile,
    PVC_NAME: "db",
    PVC_NAMESPACE: "shop",
  };
});

afterAll(async () => {
  function_?.close();
  await rest?.stop();
});

describe("a backup of a command's output", () => {
  it("is saved as one file holding exactly what the command wrote, fetched with the pod's token", async () => {
    const dump = ["-- PostgreSQL database dump\n", "COPY orders (id, total) FROM stdin;\n", "1\t9.99\n2\t19.50\n", "\\.\n"];
    answer = { chunks: dump, exitCode: "0", error: "" };
    const before = asked.length;
    const run = await runWorker("backup", base);
    expect(run.result, JSON.stringify(run.logs.slice(-5))).toMatchObject({ outcome: "Succeeded", reason: "Completed" });
    expect(run.result.message).toMatch(/^Backed up the backup command's output of PVC shop\/db as snapshot [0-9a-f]{8}: /);
    // The repository did not exist: the worker created it before it asked for the stream, so the command ran once.
    expect(run.logs.map((l) => l.msg)).toContain("Initialised the repository.");
    expect(asked.slice(before)).toEqual([{ path: "/streams/shop/db-dump", authorization: "Bearer the-pods-projected-token" }]);
    const id = run.result.snapshotId ?? "";
    expect(await restic(["dump", id, "/db.postgres.stdout"], base)).toBe(dump.join(""));
    expect(JSON.parse(await restic(["ls", "--json", id], base).then((t) => t.split("\n")[0] ?? "{}"))).toMatchObject({
      paths: ["/db.postgres.stdout"],
      tags: expect.arrayContaining(["pvc=db", "namespace=shop"]),
    });
  });

  it("a command that exits non-zero saves nothing, and says what it wrote to stderr", async () => {
    const before = (await listSnapshots(base)).length;
    answer = {
      chunks: ["-- PostgreSQL database dump\n", "COPY orders"],
      exitCode: "1",
      error: "pg_dump: error: query failed: ERROR: permission denied for table orders",
    };
    const run = await runWorker("backup", base);
    expect(run.result).toMatchObject({ outcome: "Failed", reason: "CommandFailed" });
    expect(run.result.message).toBe(
      "The backup command exited 1: pg_dump: error: query failed: ERROR: permission denied for table orders. No snapshot was made.",
    );
    expect(run.result.snapshotId).toBeUndefined();
    expect(await listSnapshots(base)).toHaveLength(before);
  });

  it("a stream the function refuses saves nothing, and says why", async () => {
    const before = (await listSnapshots(base)).length;
    answer = { chunks: [], exitCode: "", error: "", status: 404 };
    const run = await runWorker("backup", base);
    expect(run.result).toMatchObject({ outcome: "Failed", reason: "CommandFailed" });
    expect(run.result.message).toBe(
      "The reconcile function did not stream the command's output (HTTP 404): BackupJob shop/db-dump is backing up no command's output now. No snapshot was made.",
    );
    expect(await listSnapshots(base)).toHaveLength(before);
  });
});

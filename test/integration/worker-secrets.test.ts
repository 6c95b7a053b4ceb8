// No secret in any output: the worker's logs (stdout), its stderr, and its termination messages, across the
// commands and the failures that print the most.
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closedPort, publicRestic, runWorker, startRestServer, tempDir, type Env, type RestServer, type WorkerRun } from "./worker-harness.ts";

const repositoryPassword = "Pw-7f3c9a-repository-UNIQUE";
const httpPassword = "Http-5e2b1d-server-UNIQUE";
const wrongPassword = "Wrong-9a8b7c-guess-UNIQUE";
const wrongHttpPassword = "Http-0d0d0d-guess-UNIQUE";
const secrets = [repositoryPassword, httpPassword, wrongPassword, wrongHttpPassword];

let dir: string;
let server: RestServer;
let env: Env;
const runs: { name: string; run: WorkerRun }[] = [];

beforeAll(async () => {
  dir = await tempDir("secrets");
  server = await startRestServer({ dataDir: path.join(dir, "rest"), users: { alice: httpPassword } });
  const source = path.join(dir, "source");
  await mkdir(source);
  await writeFile(path.join(source, "a.txt"), "a\n");
  env = {
    RESTIC_BINARY: await publicRestic(dir),
    RESTIC_REPOSITORY: server.repository("alice", httpPassword, "main"),
    RESTIC_PASSWORD: repositoryPassword,
    CLUSTER_NAME: "test-cluster",
    SOURCE_PATH: source,
    PVC_NAME: "orders",
    PVC_NAMESPACE: "shop",
    LOG_LEVEL: "trace",
  };
  const port = await closedPort();
  const cases: [string, "backup" | "restore" | "prune" | "check" | "unlock", Env][] = [
    ["backup creating the repository", "backup", { INITIALIZE_REPO: "true" }],
    ["incremental backup", "backup", {}],
    ["restore", "restore", { RESTORE_TARGET_PATH: path.join(dir, "restored") }],
    ["prune", "prune", { RETENTION: '{"last":1}' }],
    ["check", "check", { CHECK_READ_DATA_SUBSET: "100%" }],
    ["unlock", "unlock", {}],
    ["wrong password", "backup", { RESTIC_PASSWORD: wrongPassword }],
    ["rejected credentials", "backup", { RESTIC_REPOSITORY: server.repository("alice", wrongHttpPassword, "main") }],
    ["unreachable", "backup", { RESTIC_REPOSITORY: `rest:http://alice:${httpPassword}@127.0.0.1:${port}/alice/main`, UNREACHABLE_TIMEOUT: "2s" }],
    ["invalid configuration", "backup", { PVC_NAME: "Not A Name" }],
  ];
  for (const [name, command, extra] of cases) runs.push({ name, run: await runWorker(command, { ...env, ...extra }) });
});

afterAll(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("secrets", () => {
  it("ran every case to the result it was meant to show", () => {
    expect(runs.map(({ name, run }) => `${name}: ${run.result.reason}`)).toEqual([
      "backup creating the repository: Completed",
      "incremental backup: Completed",
      "restore: Completed",
      "prune: Completed",
      "check: Completed",
      "unlock: Completed",
      "wrong password: WrongPassword",
      "rejected credentials: Unauthorized",
      "unreachable: Unreachable",
      "invalid configuration: InvalidConfig",
    ]);
  });

  it("appear in no log line, no stderr and no termination message", () => {
    const leaks = runs.flatMap(({ name, run }) =>
      [
        ["stdout", run.stdout],
        ["stderr", run.stderr],
        ["termination message", run.terminationMessage],
      ].flatMap(([stream, text]) => secrets.filter((s) => text?.includes(s)).map((s) => `${name} ${stream}: ${s}`)),
    );
    expect(leaks).toEqual([]);
  });

  it("leave a redacted repository URL where one is shown", () => {
    const shown = runs.flatMap(({ run }) => [run.stdout, run.terminationMessage]).join("\n");
    expect(shown).toContain(`rest:http://alice:***@127.0.0.1:${server.port}/alice/main`);
    expect(runs.find((r) => r.name === "unreachable")?.run.result.message).toMatch(/http:\/\/alice:\*\*\*@127\.0\.0\.1/);
  });
});

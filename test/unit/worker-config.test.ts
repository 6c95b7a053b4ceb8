import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig, terminationMessagePath } from "../../functions/worker/config.ts";
import type { WorkerCommand } from "../../lib/restic/result.ts";

const secret = { RESTIC_REPOSITORY: "rest:http://alice:urlpass@127.0.0.1:8000/alice/r", RESTIC_PASSWORD: "pw" };
const backupEnv = { ...secret, CLUSTER_NAME: "prod", SOURCE_PATH: "/source", PVC_NAME: "data", PVC_NAMESPACE: "shop" };

function problems(command: WorkerCommand, env: Record<string, string | undefined>): string[] {
  try {
    parseConfig(command, env);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
}

describe("backup configuration", () => {
  it("reads a complete environment", () => {
    const c = parseConfig("backup", { ...backupEnv, BACKUP_SCHEDULE: "nightly", SNAPSHOT_TIME: "2024-05-01T02:00:00Z", INITIALIZE_REPO: "Yes" });
    expect(c).toMatchObject({
      command: "backup",
      host: "prod",
      sourcePath: "/source",
      owner: { pvc: "data", namespace: "shop", schedule: "nightly" },
      snapshotTime: new Date("2024-05-01T02:00:00Z"),
      initializeRepo: true,
      resticBinary: "restic",
      lockWait: "5m",
      unreachableTimeoutMs: 120_000,
      progress: { intervalMs: 10_000 },
      logLevel: "info",
    });
  });

  it("keeps only a redacted repository, for messages", () => {
    expect(parseConfig("backup", backupEnv).repository).toBe("rest:http://alice:***@127.0.0.1:8000/alice/r");
  });

  it("treats empty variables as unset", () => {
    const c = parseConfig("backup", { ...backupEnv, SNAPSHOT_TIME: "", BACKUP_SCHEDULE: "", INITIALIZE_REPO: "" });
    expect(c).toMatchObject({ initializeRepo: false, owner: { schedule: undefined } });
  });

  it.each([
    { name: "no repository", env: { ...backupEnv, RESTIC_REPOSITORY: "" }, says: "RESTIC_REPOSITORY is required" },
    { name: "a repository file instead", env: { ...backupEnv, RESTIC_REPOSITORY: "", RESTIC_REPOSITORY_FILE: "/r" }, says: undefined },
    { name: "no password", env: { ...backupEnv, RESTIC_PASSWORD: "" }, says: "RESTIC_PASSWORD is required" },
    { name: "a password command instead", env: { ...backupEnv, RESTIC_PASSWORD: "", RESTIC_PASSWORD_COMMAND: "cat /pw" }, says: undefined },
    { name: "no source", env: { ...backupEnv, SOURCE_PATH: "" }, says: "SOURCE_PATH is required (or STREAM_URL)" },
    { name: "two sources", env: { ...backupEnv, STREAM_URL: "http://10.0.0.1/streams/a/b" }, says: "SOURCE_PATH and STREAM_URL are two sources: give one" },
    {
      name: "a stream without its file name and token",
      env: { ...backupEnv, SOURCE_PATH: "", STREAM_URL: "http://10.0.0.1/streams/a/b" },
      says: "STDIN_FILENAME is required with STREAM_URL; PROGRESS_TOKEN_FILE is required with STREAM_URL",
    },
    {
      name: "a stream",
      env: { ...backupEnv, SOURCE_PATH: "", STREAM_URL: "http://10.0.0.1/streams/a/b", STDIN_FILENAME: "db.pg.stdout", PROGRESS_TOKEN_FILE: "/t" },
      says: undefined,
    },
    {
      name: "a file name with a slash",
      env: { ...backupEnv, SOURCE_PATH: "", STREAM_URL: "http://10.0.0.1/streams/a/b", STDIN_FILENAME: "a/b", PROGRESS_TOKEN_FILE: "/t" },
      says: "STDIN_FILENAME must be a file name, without '/'",
    },
    { name: "a relative source", env: { ...backupEnv, SOURCE_PATH: "data" }, says: "SOURCE_PATH must be an absolute path" },
    { name: "no cluster name", env: { ...backupEnv, CLUSTER_NAME: "" }, says: "CLUSTER_NAME is required" },
    { name: "no PVC", env: { ...backupEnv, PVC_NAME: "" }, says: "PVC_NAME is required" },
    { name: "a PVC name with a comma", env: { ...backupEnv, PVC_NAME: "a,b" }, says: "PVC_NAME must be a Kubernetes name" },
    { name: "a bad time", env: { ...backupEnv, SNAPSHOT_TIME: "noon" }, says: "SNAPSHOT_TIME must be an RFC 3339 time" },
    { name: "a bad flag", env: { ...backupEnv, INITIALIZE_REPO: "maybe" }, says: "INITIALIZE_REPO must be true or false" },
    { name: "a bad lock wait", env: { ...backupEnv, LOCK_WAIT: "5 minutes" }, says: "LOCK_WAIT must be a duration" },
    { name: "a bad sink", env: { ...backupEnv, PROGRESS_SINK_URL: "ftp://x" }, says: "PROGRESS_SINK_URL must be an http or https URL" },
    { name: "a bad log level", env: { ...backupEnv, LOG_LEVEL: "loud" }, says: "LOG_LEVEL" },
  ])("$name", ({ env, says }) => {
    const found = problems("backup", env);
    if (says === undefined) expect(found).toEqual([]);
    else expect(found.join("; ")).toContain(says);
  });

  it("names every problem at once", () => {
    expect(problems("backup", { RESTIC_PASSWORD: "pw" })).toEqual([
      "RESTIC_REPOSITORY is required (or RESTIC_REPOSITORY_FILE)",
      "CLUSTER_NAME is required",
      "PVC_NAME is required",
      "PVC_NAMESPACE is required",
      "SOURCE_PATH is required (or STREAM_URL)",
    ]);
  });

  it("never puts a secret in its message", () => {
    expect(() => parseConfig("backup", { ...backupEnv, PVC_NAME: "" })).toThrow(/^Invalid worker configuration: PVC_NAME is required\.$/);
    expect(problems("backup", { ...backupEnv, PVC_NAME: "" }).join()).not.toContain("urlpass");
  });
});

describe("restore configuration", () => {
  const restoreEnv = { ...secret, RESTORE_TARGET_PATH: "/target" };

  it.each([
    { env: { RESTORE_SNAPSHOT: "abcdef12" }, source: { kind: "id", id: "abcdef12" } },
    {
      env: { CLUSTER_NAME: "prod", PVC_NAME: "data", PVC_NAMESPACE: "shop" },
      source: { kind: "latest", host: "prod", pvc: "data", namespace: "shop" },
    },
    {
      env: { RESTORE_SNAPSHOT: "latest", CLUSTER_NAME: "prod", PVC_NAME: "data", PVC_NAMESPACE: "shop", RESTORE_BEFORE: "2024-05-01T00:00:00Z" },
      source: { kind: "latest", host: "prod", pvc: "data", namespace: "shop", before: new Date("2024-05-01T00:00:00Z") },
    },
  ])("chooses $source.kind", ({ env, source }) => {
    expect(parseConfig("restore", { ...restoreEnv, ...env })).toMatchObject({ command: "restore", targetPath: "/target", source, include: [] });
  });

  it("reads includes as a JSON array", () => {
    expect(parseConfig("restore", { ...restoreEnv, RESTORE_SNAPSHOT: "abcdef12", RESTORE_INCLUDE: '["/db","/conf d"]' })).toMatchObject({
      include: ["/db", "/conf d"],
    });
  });

  it.each([
    { env: { RESTORE_SNAPSHOT: "abcdef12", RESTORE_TARGET_PATH: "" }, says: "RESTORE_TARGET_PATH is required" },
    { env: { RESTORE_SNAPSHOT: "xyz" }, says: "RESTORE_SNAPSHOT must be a snapshot id" },
    { env: { RESTORE_SNAPSHOT: "abcdef12", RESTORE_BEFORE: "2024-05-01T00:00:00Z" }, says: "RESTORE_BEFORE cannot be combined" },
    { env: { CLUSTER_NAME: "prod" }, says: "PVC_NAME is required to find the latest snapshot" },
    { env: { PVC_NAME: "data", PVC_NAMESPACE: "shop" }, says: "CLUSTER_NAME is required to find the latest snapshot" },
    { env: { RESTORE_SNAPSHOT: "abcdef12", RESTORE_INCLUDE: "/db" }, says: "RESTORE_INCLUDE must be JSON" },
    { env: { RESTORE_SNAPSHOT: "abcdef12", RESTORE_INCLUDE: '"/db"' }, says: "RESTORE_INCLUDE must be a JSON array of paths" },
  ])("rejects $env", ({ env, says }) => {
    expect(problems("restore", { ...restoreEnv, ...env }).join("; ")).toContain(says);
  });
});

describe("prune, check and unlock configuration", () => {
  it("reads the retention policy as JSON", () => {
    const c = parseConfig("prune", { ...secret, CLUSTER_NAME: "prod", RETENTION: '{"daily":7,"weekly":4}', BACKUP_SCHEDULE: "nightly" });
    expect(c).toMatchObject({ command: "prune", host: "prod", retention: { daily: 7, weekly: 4 }, schedule: "nightly" });
  });

  it.each([
    { RETENTION: "", says: "RETENTION is required" },
    { RETENTION: "{}", says: "RETENTION must keep something" },
    { RETENTION: '{"dayly":7}', says: "RETENTION" },
    { RETENTION: '{"daily":"7"}', says: "RETENTION.daily" },
    { RETENTION: "daily=7", says: "RETENTION must be JSON" },
  ])("rejects RETENTION=$RETENTION", ({ RETENTION, says }) => {
    expect(problems("prune", { ...secret, CLUSTER_NAME: "prod", RETENTION }).join("; ")).toContain(says);
  });

  it.each(["1/10", "5%", "2.5%", "500M", "1024"])("accepts a data subset %s", (subset) => {
    expect(parseConfig("check", { ...secret, CHECK_READ_DATA_SUBSET: subset })).toMatchObject({ readDataSubset: subset });
  });

  it.each(["prune", "check", "unlock"] as const)("%s reads STALE_LOCKS_BEFORE as a time, and names it when it is not one", (command) => {
    const env = { ...secret, CLUSTER_NAME: "prod", RETENTION: '{"last":1}' };
    expect(parseConfig(command, { ...env, STALE_LOCKS_BEFORE: "2026-12-04T10:00:00Z" })).toMatchObject({ staleLocksBefore: new Date("2026-12-04T10:00:00Z") });
    expect(problems(command, { ...env, STALE_LOCKS_BEFORE: "an hour ago" }).join()).toContain("STALE_LOCKS_BEFORE must be an RFC 3339 time");
  });

  it("snapshots needs the PVC", () => {
    expect(parseConfig("snapshots", { ...secret, PVC_NAME: "data", PVC_NAMESPACE: "shop" })).toMatchObject({
      command: "snapshots",
      owner: { pvc: "data", namespace: "shop" },
    });
    expect(problems("snapshots", secret).join("; ")).toMatch(/PVC_NAME is required.*PVC_NAMESPACE is required/);
  });

  it("rejects a bad data subset", () => {
    expect(problems("check", { ...secret, CHECK_READ_DATA_SUBSET: "half" }).join()).toContain("CHECK_READ_DATA_SUBSET must be");
  });

  it("needs only the repository for unlock", () => {
    expect(parseConfig("unlock", secret)).toMatchObject({ command: "unlock" });
  });
});

describe("termination message path", () => {
  it.each([
    [{}, "/dev/termination-log"],
    [{ TERMINATION_MESSAGE_PATH: "" }, "/dev/termination-log"],
    [{ TERMINATION_MESSAGE_PATH: "/tmp/x" }, "/tmp/x"],
  ])("%j → %s", (env, path) => {
    expect(terminationMessagePath(env)).toBe(path);
  });
});

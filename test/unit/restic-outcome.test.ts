import { describe, expect, it } from "vitest";
import { exitMeaning } from "../../lib/restic/exit-codes.ts";
import { classify, type ResticRunFacts } from "../../lib/restic/outcome.ts";

const repo = "rest:http://alice:***@127.0.0.1:8000/alice/repo/";
const facts = (f: Partial<ResticRunFacts>): ResticRunFacts => ({ command: "backup", exitCode: 0, errors: [], stderr: [], ...f });

describe("classify a restic run", () => {
  it.each([
    { name: "success", f: facts({}), reason: "Completed" },
    {
      name: "unreadable files (3)",
      f: facts({ exitCode: 3, errors: ["/s/x: permission denied"] }),
      reason: "Incomplete",
      says: "1 source file could not be read",
    },
    {
      name: "nothing readable (1, snapshot is empty)",
      f: facts({
        exitCode: 1,
        errors: ["openfile for readdirnames failed: open pgdata: permission denied"],
        finalMessage: "Fatal: unable to save snapshot: snapshot is empty",
      }),
      reason: "Incomplete",
      says: "No source file could be read (1 error), so no snapshot was made. First: openfile for readdirnames failed: open pgdata: permission denied",
    },
    { name: "no repository (10)", f: facts({ exitCode: 10 }), reason: "NoRepository", says: "INITIALIZE_REPO=true" },
    {
      name: "locked (11)",
      f: facts({ exitCode: 11, finalMessage: "repository is already locked exclusively by PID 7\nlock was created at 2024-01-01 (3m ago)" }),
      reason: "Locked",
      says: "lock was created at 2024-01-01 (3m ago)",
    },
    {
      name: "wrong password (12)",
      f: facts({ exitCode: 12, finalMessage: "Fatal: wrong password or no key found" }),
      reason: "WrongPassword",
      says: "password is wrong",
    },
    { name: "cancelled by restic (130)", f: facts({ exitCode: 130 }), reason: "Cancelled" },
    {
      name: "cancelled by the worker (restic exits 1)",
      f: facts({ exitCode: 1, stoppedBy: "cancel", finalMessage: "Fatal: context canceled" }),
      reason: "Cancelled",
    },
    {
      name: "stopped as unreachable",
      f: facts({ exitCode: 1, stoppedBy: "unreachable", lastRetryError: 'Head "http://…/config": dial tcp 127.0.0.1:9: connect: connection refused' }),
      reason: "Unreachable",
      says: "could not be reached for 2m",
    },
    {
      name: "stopped while retrying a full rest-server's 507",
      f: facts({ exitCode: 1, stoppedBy: "unreachable", lastRetryError: "server response unexpected: 507 Insufficient Storage (507)" }),
      reason: "RepositoryFull",
      says: "is full: server response unexpected: 507 Insufficient Storage (507). No snapshot was made.",
    },
    {
      name: "a local repository out of space",
      f: facts({ exitCode: 1, finalMessage: "Fatal: unable to save snapshot: write /r/data/ab/x: no space left on device" }),
      reason: "RepositoryFull",
      says: "no space left on device",
    },
    {
      name: "401 (restic also asks whether there is a repository)",
      f: facts({
        exitCode: 1,
        finalMessage: `Fatal: unable to open config file: unexpected HTTP response (401): 401 Unauthorized\nIs there a repository at the following location?\n${repo}`,
      }),
      reason: "Unauthorized",
    },
    {
      name: "403 on prune (append-only)",
      f: facts({ command: "prune", exitCode: 1, finalMessage: "Fatal: unexpected HTTP response (403): 403 Forbidden" }),
      reason: "Forbidden",
      says: "--append-only",
    },
    {
      name: "forget exits 0 but could not delete (append-only)",
      f: facts({
        command: "forget",
        stderr: [
          "Remove(<snapshot/60848f1b55>) failed: unexpected HTTP response (403): 403 Forbidden",
          "unable to remove snapshot/60848f1b from the repository",
        ],
      }),
      reason: "Forbidden",
    },
    {
      name: "forget exits 0 but could not delete (other)",
      f: facts({ command: "forget", stderr: ["unable to remove snapshot/60848f1b from the repository"] }),
      reason: "ResticFailed",
    },
    { name: "a 403 line on a successful backup is not a failure", f: facts({ stderr: ["403 Forbidden"] }), reason: "Completed" },
    {
      name: "restic gave up on a refused connection",
      f: facts({ exitCode: 1, finalMessage: 'Fatal: unable to open config file: Head "http://x/config": dial tcp 127.0.0.1:1: connect: connection refused' }),
      reason: "Unreachable",
    },
    { name: "unknown host", f: facts({ exitCode: 1, finalMessage: "Fatal: dial tcp: lookup nowhere.invalid: no such host" }), reason: "Unreachable" },
    {
      name: "restic 0.14: no repository",
      f: facts({
        exitCode: 1,
        finalMessage: "Fatal: unable to open config file: stat /r/config: no such file or directory\nIs there a repository at the following location?\n/r",
      }),
      reason: "NoRepository",
    },
    { name: "restic 0.14: wrong password", f: facts({ exitCode: 1, finalMessage: "Fatal: wrong password or no key found" }), reason: "WrongPassword" },
    {
      name: "restic 0.14: locked",
      f: facts({ exitCode: 1, finalMessage: "Fatal: unable to create lock in backend: repository is already locked by PID 1" }),
      reason: "Locked",
    },
    {
      name: "restore of an unknown id",
      f: facts({ command: "restore", exitCode: 1, finalMessage: 'Fatal: failed to find snapshot: no matching ID found for prefix "deadbeef"' }),
      reason: "NoSnapshot",
    },
    {
      name: "any other fatal error",
      f: facts({ exitCode: 1, finalMessage: "Fatal: disk full" }),
      reason: "ResticFailed",
      says: "restic backup failed (fatal error, no snapshot was made): Fatal: disk full",
    },
    { name: "killed by a signal", f: facts({ exitCode: null, signal: "SIGKILL" }), reason: "ResticFailed", says: "ended by signal SIGKILL" },
  ])("$name → $reason", ({ f, reason, says }) => {
    const v = classify(f, { repository: repo, lockWait: "5m", unreachableTimeout: "2m" });
    expect(v.reason).toBe(reason);
    if (says) expect(v.message).toContain(says);
  });

  it("counts all unreadable files, not only those it kept", () => {
    expect(classify(facts({ exitCode: 3, errors: ["a", "b"], errorCount: 250 })).message).toMatch(/^250 source files could not be read; .* First: a$/);
  });

  it("names the repository in messages, as given (already redacted)", () => {
    expect(classify(facts({ exitCode: 12 }), { repository: repo }).message).toContain(repo);
    expect(classify(facts({ exitCode: 10 })).message).toContain("the configured location");
  });
});

describe("exit code meanings", () => {
  it.each([
    [0, "success"],
    [1, "fatal error, no snapshot was made"],
    [3, "some source files could not be read, the snapshot was made without them"],
    [10, "the repository does not exist"],
    [11, "the repository lock could not be taken"],
    [12, "wrong password"],
    [130, "cancelled"],
    [42, "unknown exit code 42"],
  ])("%i means %s", (code, meaning) => {
    expect(exitMeaning(code)).toBe(meaning);
  });

  it("explains a run ended by a signal", () => {
    expect(exitMeaning(null, "SIGKILL")).toBe("ended by signal SIGKILL");
  });
});

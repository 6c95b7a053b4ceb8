// The repository Secret's part of a worker's environment: only restic's repository variables pass, by name.
import { describe, expect, it } from "vitest";
import { podEnvironment, secretKeyAllowed, splitEnvironment } from "../../lib/restic/secret-env.ts";

describe("the repository Secret's keys in a worker's environment", () => {
  it.each([
    ["RESTIC_REPOSITORY", true],
    ["RESTIC_PASSWORD_COMMAND", true],
    ["RESTIC_REST_USERNAME", true],
    ["AWS_SECRET_ACCESS_KEY", true],
    ["RESTIC_AWS_ASSUME_ROLE_ARN", true],
    ["B2_ACCOUNT_KEY", true],
    ["AZURE_ACCOUNT_SAS", true],
    ["GOOGLE_APPLICATION_CREDENTIALS", true],
    ["OS_PASSWORD", true],
    ["INITIALIZE_REPO", true],
    ["UNREACHABLE_TIMEOUT", true],
    ["LOCK_WAIT", true],
    ["REPOSITORY_WAIT", false],
    ["NODE_OPTIONS", false],
    ["RESTIC_BINARY", false],
    ["RESTIC_CACHE_DIR", false],
    ["RESTIC_HOST", false],
    ["LD_PRELOAD", false],
    ["PATH", false],
    ["TERMINATION_MESSAGE_PATH", false],
    ["PROGRESS_SINK_URL", false],
    ["CLUSTER_NAME", false],
  ])("%s may come from the Secret: %s", (key, allowed) => {
    expect(secretKeyAllowed(key)).toBe(allowed);
  });

  it("puts the Secret's allowed keys back under their own names, beneath the worker's own settings", () => {
    const env = podEnvironment(
      { RESTIC_REPOSITORY: "rest:http://r/", RESTIC_PASSWORD: "pw", INITIALIZE_REPO: "true" },
      { INITIALIZE_REPO: "false", CLUSTER_NAME: "prod" },
    );
    expect(env).toEqual({
      SECRET_RESTIC_REPOSITORY: "rest:http://r/",
      SECRET_RESTIC_PASSWORD: "pw",
      SECRET_INITIALIZE_REPO: "true",
      INITIALIZE_REPO: "false",
      CLUSTER_NAME: "prod",
    });
    expect(splitEnvironment(env)).toEqual({
      env: { RESTIC_REPOSITORY: "rest:http://r/", RESTIC_PASSWORD: "pw", INITIALIZE_REPO: "false", CLUSTER_NAME: "prod" },
      refused: [],
    });
  });

  it("refuses each key of the Secret that is not a repository variable, and never lets it set the variable", () => {
    const split = splitEnvironment(
      podEnvironment({ RESTIC_PASSWORD: "pw", NODE_OPTIONS: "--require /evil.js", RESTIC_BINARY: "/bin/sh" }, { RESTIC_BINARY: "/usr/bin/restic" }),
    );
    expect(split.refused).toEqual([
      "the repository Secret's key NODE_OPTIONS is not one of restic's repository variables (a Secret may hold only those, and INITIALIZE_REPO, UNREACHABLE_TIMEOUT, LOCK_WAIT)",
      "the repository Secret's key RESTIC_BINARY is not one of restic's repository variables (a Secret may hold only those, and INITIALIZE_REPO, UNREACHABLE_TIMEOUT, LOCK_WAIT)",
    ]);
    expect(split.env).toEqual({ RESTIC_PASSWORD: "pw", RESTIC_BINARY: "/usr/bin/restic" });
  });

  it("refuses restic's repository variables set outside the Secret: nothing else can point a worker at a repository", () => {
    expect(splitEnvironment({ SECRET_RESTIC_REPOSITORY: "rest:http://mine/", RESTIC_REPOSITORY: "rest:http://elsewhere/" }).refused).toEqual([
      "RESTIC_REPOSITORY is set outside the repository Secret (restic's repository variables come only from it, as SECRET_RESTIC_REPOSITORY)",
    ]);
  });
});

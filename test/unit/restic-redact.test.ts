import { describe, expect, it } from "vitest";
import { isSecretName, makeRedactor, redactUrl, repositoryLocation, secretValues } from "../../lib/restic/redact.ts";

describe("URL credentials", () => {
  it.each([
    ["rest:https://alice:s3cret@backup.example:8000/alice/repo", "rest:https://alice:***@backup.example:8000/alice/repo"],
    ["rest:http://alice:p%40ss@127.0.0.1:8000/", "rest:http://alice:***@127.0.0.1:8000/"],
    ["s3:https://s3.amazonaws.com/bucket", "s3:https://s3.amazonaws.com/bucket"],
    ["sftp:user@host:/srv/repo", "sftp:user@host:/srv/repo"],
    ["/local/repo", "/local/repo"],
    ['Head "http://bob:pw@10.0.0.1/config": dial tcp', 'Head "http://bob:***@10.0.0.1/config": dial tcp'],
    ["two: http://a:1@x and https://b:2@y", "two: http://a:***@x and https://b:***@y"],
    ["rest:http://:onlypassword@host/", "rest:http://:***@host/"],
  ])("%s", (input, want) => {
    expect(redactUrl(input)).toBe(want);
  });
});

describe("secret variables", () => {
  it.each([
    ["RESTIC_PASSWORD", true],
    ["RESTIC_PASSWORD_COMMAND", true],
    ["RESTIC_PASSWORD_FILE", false],
    ["RESTIC_REST_PASSWORD", true],
    ["AWS_SECRET_ACCESS_KEY", true],
    ["AWS_SESSION_TOKEN", true],
    ["B2_ACCOUNT_KEY", true],
    ["AZURE_ACCOUNT_SAS", true],
    ["GOOGLE_APPLICATION_CREDENTIALS", true],
    ["ST_KEY", true],
    ["RESTIC_REPOSITORY", false],
    ["AWS_ACCESS_KEY_ID", false],
    ["PVC_NAME", false],
  ])("%s is secret: %s", (name, secret) => {
    expect(isSecretName(name)).toBe(secret);
  });

  it("collects secret values and URL passwords, skipping empty ones", () => {
    const values = secretValues({
      RESTIC_PASSWORD: "hunter2",
      RESTIC_REPOSITORY: "rest:http://alice:urlpass@host/alice/r",
      AWS_SECRET_ACCESS_KEY: "",
      RESTIC_PASSWORD_FILE: "/secrets/pw",
      PVC_NAME: "data",
    });
    expect(values.sort()).toEqual(["hunter2", "urlpass"]);
  });
});

describe("redactor", () => {
  const redact = makeRedactor(["hunter2", "hunter2-long", "x".repeat(3)]);

  it.each([
    ["password hunter2 here", "password *** here"],
    ["hunter2-long first", "*** first"],
    ["no secret", "no secret"],
    ["rest:http://u:zzz@h/ and hunter2", "rest:http://u:***@h/ and ***"],
    ["xxx", "***"],
  ])("%s", (input, want) => {
    expect(redact(input)).toBe(want);
  });

  it("with no secrets still masks URL credentials", () => {
    expect(makeRedactor([])("http://a:b@c")).toBe("http://a:***@c");
  });
});

describe("a repository's location, masked for a tenant's view", () => {
  it.each([
    {
      repository: "rest:https://backup:pw@rest.backups.example:8000/team-a/main",
      message:
        "There is no restic repository at rest:https://backup:***@rest.backups.example:8000/team-a/main. Fatal: Get https://rest.backups.example:8000/team-a/main/config",
      hidden: ["rest.backups.example", "8000", "team-a/main", "backup:"],
    },
    {
      repository: "s3:s3.eu-west-1.amazonaws.com/acme-backups/team-a",
      message: "unable to open s3:s3.eu-west-1.amazonaws.com/acme-backups/team-a: bucket acme-backups denied",
      hidden: ["amazonaws.com", "acme-backups", "team-a"],
    },
    {
      repository: "sftp:restic@vault.internal:/srv/restic/team-a",
      message: "ssh: connect to host vault.internal: refused for restic@vault.internal",
      hidden: ["vault.internal", "/srv/restic"],
    },
    {
      repository: "/mnt/backups/team-a",
      message: "Fatal: unable to open config file: stat /mnt/backups/team-a/config: no such file",
      hidden: ["/mnt/backups"],
    },
  ])("$repository", ({ repository, message, hidden }) => {
    const shown = makeRedactor(repositoryLocation(repository))(message);
    for (const piece of hidden) expect(shown).not.toContain(piece);
    expect(shown).toContain("***");
  });

  it("never masks short, common pieces on their own", () => {
    expect(repositoryLocation("rest:http://u:p@h:80/r")).toEqual(expect.not.arrayContaining(["h", "80", "r", "u"]));
  });
});

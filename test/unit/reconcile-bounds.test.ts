// The admission policy bounding Walle's service accounts (knative/reconcile-bounds.yaml) says the same as the code
// it bounds: the capabilities a worker may add back are those of the worker modes, and the progress token's
// audience is the default one. (What it admits and denies is tried on the real API server: test/cluster.)
import { readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { repoRoot } from "../../cluster/toolchain.ts";
import { WORKER_SERVICE_ACCOUNT } from "../../lib/api/constants.ts";
import { DEFAULT_PROGRESS_AUDIENCE } from "../../lib/core/builders.ts";
import { PRIVILEGED_CAPABILITIES } from "../../lib/core/privileges.ts";
import { workerSettingNames } from "../../functions/worker/config.ts";
import { JobType } from "../../lib/api/constants.ts";

interface Policy {
  kind: string;
  spec: { variables?: { name: string; expression: string }[]; validations: { expression: string }[] };
}

async function policy(): Promise<Policy> {
  const docs = parseAllDocuments(await readFile(path.join(repoRoot, "knative", "reconcile-bounds.yaml"), "utf8")).map((d) => d.toJSON() as Policy);
  const found = docs.find((d) => d.kind === "ValidatingAdmissionPolicy");
  if (!found) throw new Error("no ValidatingAdmissionPolicy in knative/reconcile-bounds.yaml");
  return found;
}

describe("the reconcile bounds policy", () => {
  it("lets a worker add back exactly the capabilities of its modes", async () => {
    const expression = (await policy()).spec.variables?.find((v) => v.name === "capabilities")?.expression ?? "";
    const listed = [...expression.matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]).sort();
    expect(listed).toEqual([...new Set(Object.values(PRIVILEGED_CAPABILITIES).flat())].sort());
  });

  it("admits the workers' own service account only, as the builders name it", async () => {
    const validations = (await policy()).spec.validations.map((v) => v.expression);
    expect(validations.find((e) => e.includes("variables.pod.serviceAccountName"))).toContain(
      `variables.pod.serviceAccountName == '${WORKER_SERVICE_ACCOUNT}'`,
    );
    expect(validations.find((e) => e.includes("variables.account"))).toContain(`object.metadata.name == '${WORKER_SERVICE_ACCOUNT}'`);
  });

  it("admits the progress token of the default audience only", async () => {
    const volumes = (await policy()).spec.validations.find((v) => v.expression.includes("serviceAccountToken"))?.expression ?? "";
    expect(volumes).toContain(`s.serviceAccountToken.audience == '${DEFAULT_PROGRESS_AUDIENCE}'`);
  });

  const listed = async (name: string) =>
    [...((await policy()).spec.variables?.find((v) => v.name === name)?.expression ?? "").matchAll(/'([A-Za-z_]+)'/g)].map((m) => m[1]);

  it("admits in a worker's env exactly the settings the worker reads, and none of restic's repository variables", async () => {
    expect(await listed("settings")).toEqual(workerSettingNames());
  });

  it("admits as a worker's args exactly the commands Walle starts workers with", async () => {
    expect((await listed("commands")).sort()).toEqual(Object.values(JobType).sort());
  });
});

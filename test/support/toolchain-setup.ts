// Global setup of the `integration` project: resolves (building once, if needed) restic and rest-server, and
// hands their paths to the tests through vitest's provide/inject.
import type { TestProject } from "vitest/node";
import { resolveResticBinaries } from "../../cluster/toolchain.ts";

declare module "vitest" {
  export interface ProvidedContext {
    restic: string;
    restServer: string;
  }
}

export default async function setup(project: TestProject): Promise<void> {
  const bins = await resolveResticBinaries((line) => console.log(line));
  project.provide("restic", bins.restic);
  project.provide("restServer", bins.restServer);
}

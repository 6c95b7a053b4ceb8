// Global setup of the `integration` project: resolves (building once, if needed) restic, rest-server and
// csi-sanity, and hands their paths to the tests through vitest's provide/inject.
import type { TestProject } from "vitest/node";
import { resolveBinary, resolveResticBinaries } from "../../cluster/toolchain.ts";

declare module "vitest" {
  export interface ProvidedContext {
    restic: string;
    restServer: string;
    csiSanity: string;
    helm: string;
  }
}

export default async function setup(project: TestProject): Promise<void> {
  const bins = await resolveResticBinaries((line) => console.log(line));
  project.provide("restic", bins.restic);
  project.provide("restServer", bins.restServer);
  project.provide("csiSanity", await resolveBinary("csi-sanity", (line) => console.log(line)));
  project.provide("helm", await resolveBinary("helm", (line) => console.log(line)));
}

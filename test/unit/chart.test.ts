import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { CHART_DIR, chartFiles } from "../../scripts/chart.ts";

const CHART = resolve(import.meta.dirname, "../..", CHART_DIR);

describe("helm/charts/walle is in sync with the kustomization", () => {
  const files = chartFiles();

  it.each(files.map((file) => [file.name, file.content] as const))("%s is current (run `npm run crdgen`)", (name, content) => {
    const path = join(CHART, name);
    expect(existsSync(path), `${CHART_DIR}/${name} is missing`).toBe(true);
    expect(readFileSync(path, "utf8")).toBe(content);
  });

  it("holds no other files", () => {
    const onDisk = readdirSync(CHART, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name).slice(CHART.length + 1));
    expect(onDisk.sort()).toEqual(files.map((file) => file.name).sort());
  });

  it("carries the CRDs as crds/ has them, and no Namespace object", () => {
    const crds = files.filter((f) => f.name.startsWith("crds/"));
    expect(crds.map((f) => f.name).sort()).toEqual([
      "crds/ros.io_backupjobs.yaml",
      "crds/ros.io_backuprestores.yaml",
      "crds/ros.io_backupschedules.yaml",
      "crds/ros.io_backupsets.yaml",
    ]);
    for (const f of crds) expect(f.content).toBe(readFileSync(resolve(import.meta.dirname, "../..", f.name), "utf8"));
    expect(files.map((f) => f.content).join("")).not.toMatch(/^kind: Namespace$/m);
  });
});

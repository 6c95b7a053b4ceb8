// `npm run bench [-- [--json] [group…]]`: Walle's measured targets (docs/architecture.md, Targets).
//
// Each group is a module whose function measures and returns figures. Figure names are stable, so results can
// be compared over time. Text output is one line per figure (name, value, unit, target, ok); with --json, one
// JSON object per line: {"name","value","unit","target","ok"}. Progress and context go to stderr, so stdout holds
// figures only. The exit code is 1 when a figure misses its target or a group fails.
//
// To add a group, add one line to `groups`.

import type { Figure } from "./figures.ts";

export type { Figure };

/** A group's module exports one of these. It may import types from here, never values: this module awaits it. */
export type Group = () => Promise<Figure[]>;

// Loaded lazily: running one group never loads (or builds the toolchain for) another.
const groups: Record<string, () => Promise<Group>> = {
  reconcile: async () => (await import("./reconcile.ts")).reconcile,
  tick: async () => (await import("./tick.ts")).tick,
  worker: async () => (await import("./worker.ts")).worker,
  scale: async () => (await import("./scale.ts")).scale,
  installed: async () => (await import("./installed.ts")).installed,
};

function formatText(f: Figure): string {
  const value = Number.isInteger(f.value) ? String(f.value) : f.value.toFixed(3);
  if (f.target === null) return `${f.name}\t${value} ${f.unit}\t(reported)`;
  return `${f.name}\t${value} ${f.unit}\ttarget ≤ ${f.target} ${f.unit}\t${f.ok ? "ok" : "MISSED"}`;
}

async function main(argv: readonly string[]): Promise<number> {
  const json = argv.includes("--json");
  const asked = argv.filter((a) => !a.startsWith("--"));
  const unknown = asked.filter((g) => !(g in groups));
  if (unknown.length > 0) {
    console.error(`Unknown bench group ${unknown.join(", ")}; the groups are ${Object.keys(groups).join(", ")}.`);
    return 2;
  }
  let failed = false;
  for (const name of asked.length > 0 ? asked : Object.keys(groups)) {
    const load = groups[name];
    if (!load) continue;
    try {
      for (const figure of await (
        await load()
      )()) {
        console.log(json ? JSON.stringify(figure) : formatText(figure));
        failed ||= !figure.ok;
      }
    } catch (error) {
      console.error(`Bench group ${name} failed:`, error);
      failed = true;
    }
  }
  return failed ? 1 : 0;
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));

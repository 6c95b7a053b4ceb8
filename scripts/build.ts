// npm run build [-- <function>…]: one bundled ES module per function, dist/<function>.mjs (and the chunks it loads lazily,
// dist/<function>-chunks/), as its image runs it.
// Functions whose entry does not exist yet are reported and skipped.
import { existsSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "../cluster/toolchain.ts";
import { bundleFunction, functionEntry, functionNames, type FunctionName } from "./bundle.ts";

const asked = process.argv.slice(2);
const unknown = asked.filter((a) => !(functionNames as readonly string[]).includes(a));
if (unknown.length > 0) {
  console.error(`Unknown function ${unknown.join(", ")}; the functions are ${functionNames.join(", ")}.`);
  process.exit(2);
}
const wanted = (asked.length > 0 ? asked : functionNames) as readonly FunctionName[];
for (const fn of wanted) {
  if (!existsSync(functionEntry(fn))) {
    console.log(`${fn}: no entry yet (${path.relative(repoRoot, functionEntry(fn))}), skipped`);
    continue;
  }
  const out = path.join(repoRoot, "dist", `${fn}.mjs`);
  await bundleFunction(fn, out);
  console.log(`${fn}: ${path.relative(repoRoot, out)}`);
}

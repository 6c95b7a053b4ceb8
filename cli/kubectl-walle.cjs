#!/usr/bin/env node
// kubectl-walle, the executable kubectl finds on the PATH for `kubectl walle` (npm install -g links it there from
// package.json's bin). The plugin is TypeScript, which Node runs as it is from 22.18 on; an older node on the PATH
// (Debian's 20, say) hands over to the Node 24 this checkout pins (the `node` devDependency).
"use strict";
const { spawnSync } = require("node:child_process");
const { existsSync } = require("node:fs");
const path = require("node:path");
const { pathToFileURL } = require("node:url");

const entry = path.join(__dirname, "kubectl-walle.ts");
const [major, minor] = process.versions.node.split(".").map(Number);
if (major > 22 || (major === 22 && minor >= 18)) {
  import(pathToFileURL(entry).href);
} else {
  const pinned = path.join(__dirname, "..", "node_modules", "node", "bin", "node");
  if (!existsSync(pinned)) {
    process.stderr.write(
      `error: kubectl walle needs Node 22.18 or later, and this is ${process.version}; run npm install in ${path.dirname(__dirname)} or put a newer node first on the PATH.\n`,
    );
    process.exit(1);
  }
  const run = spawnSync(pinned, [entry, ...process.argv.slice(2)], { stdio: "inherit" });
  process.exit(run.status ?? 1);
}

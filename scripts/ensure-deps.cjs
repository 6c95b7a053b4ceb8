// Runs before `npm start` and `npm test` (prestart/pretest), on whatever Node the machine has: installs the npm
// packages, Node 24 among them, when they are missing or older than package-lock.json, so those two commands are
// all the set-up a fresh machine needs. CommonJS and no dependencies, since nothing is installed yet.
"use strict";
const { existsSync, statSync } = require("node:fs");
const { spawnSync } = require("node:child_process");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const installed = path.join(root, "node_modules", ".package-lock.json");
const lock = path.join(root, "package-lock.json");
const fresh = existsSync(installed) && statSync(installed).mtimeMs >= statSync(lock).mtimeMs;
if (!fresh) {
  console.log("Installing the npm packages (Node 24 included) with npm ci; later runs skip this.");
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const result = spawnSync(npm, ["ci", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
  process.exit(result.status ?? 1);
}

// Entry point of the tick function.
//
//   node functions/tick/main.ts [--now <time>] [--dry-run] [--schedule <name>] [--no-resync]
//                                                                                  one tick, for the KEDA ScaledJob
//   node functions/tick/main.ts serve                                             CloudEvents over HTTP (PingSource)
//
// One tick exits 0 when it completed and 1 when any part of it failed (the next tick retries; deterministic names
// make that safe), 2 on bad arguments or configuration. Its report goes to stdout as one JSON line, logs to stderr;
// `--dry-run` reads and decides as usual, prints what it would do, and changes nothing. `--now` is the time the
// schedules are read at; in-flight work is judged by the real clock. `--no-resync` evaluates the schedules only.
import { parseArgs } from "node:util";
import { loadConfig } from "../../lib/app/config.ts";
import { createReceiver, serve } from "../../lib/app/receiver.ts";
import { requireSenderIdentity } from "../../lib/app/sender-identity.ts";
import { createWalle } from "../../lib/app/walle.ts";
import { clientFromEnv } from "../../lib/k8s/kubeconfig.ts";
import { createLogger, failStart } from "../../lib/log.ts";
import { handle } from "./index.ts";
import { pino } from "pino";

const SERVICE = "walle-tick";
const USAGE = "Usage: node functions/tick/main.ts [--now <RFC 3339 time>] [--dry-run] [--schedule <name>] [--no-resync] | serve";

function usage(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseNow(text: string | undefined): Date | undefined {
  if (text === undefined) return undefined;
  const at = new Date(text);
  if (Number.isNaN(at.getTime()) || !/^\d{4}-\d{2}-\d{2}T/.test(text))
    usage(`--now ${JSON.stringify(text)} is not an RFC 3339 time such as 2026-12-02T06:00:00Z`);
  return at;
}

function commandLine() {
  try {
    return parseArgs({
      args: process.argv.slice(2),
      allowPositionals: true,
      options: {
        now: { type: "string" },
        "dry-run": { type: "boolean" },
        schedule: { type: "string" },
        "no-resync": { type: "boolean" },
        help: { type: "boolean" },
      },
    });
  } catch (err) {
    return usage((err as Error).message);
  }
}

async function main(): Promise<void> {
  const args = commandLine();
  if (args.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const [mode, ...rest] = args.positionals;
  if (rest.length > 0 || (mode !== undefined && mode !== "serve")) usage(`unexpected argument ${JSON.stringify(mode === "serve" ? rest[0] : mode)}`);
  const fixed = parseNow(args.values.now);
  const { walle: config, serve: shell } = await failStart(SERVICE, () => loadConfig(process.env, SERVICE));
  const api = await clientFromEnv(process.env);

  if (mode === "serve") {
    const pingSource = shell.pingSource;
    if (pingSource) {
      const controller = { name: `ros.io/${SERVICE}`, instance: config.instance };
      await failStart(SERVICE, () => requireSenderIdentity(api, { namespace: config.installNamespace, name: pingSource }, controller, new Date()));
    }
    const log = createLogger({ function: shell.service, level: shell.logLevel });
    const walle = createWalle({ api, config, controller: `ros.io/${SERVICE}` });
    const receiver = createReceiver({
      log,
      handle: (context, event) => handle({ ...context, walle }, event),
      ...(shell.triggerToken ? { triggerToken: shell.triggerToken } : {}),
    });
    const address = await serve(receiver, shell.port, log);
    log.info({ port: address.port }, "Started tick function");
    return;
  }

  // One tick: logs on stderr, so stdout holds the report alone.
  const log = createLogger({ function: shell.service, level: shell.logLevel, destination: pino.destination({ dest: 2, sync: true }) });
  const walle = createWalle({ api, config, controller: `ros.io/${SERVICE}` });
  const dryRun = args.values["dry-run"] === true;
  const schedule = args.values.schedule;
  try {
    const resync = args.values["no-resync"] !== true;
    const report = await walle.tick({ dryRun, resync, ...(schedule ? { schedule } : {}), ...(fixed ? { at: fixed } : {}) }, log);
    if (dryRun) for (const a of report.actions) process.stdout.write(`would ${a}\n`);
    // With the API requests it made, so an operator (and the scale benchmark) sees what a tick costs the API server.
    process.stdout.write(`${JSON.stringify({ ...report, apiRequests: api.requests })}\n`);
    if (report.errors.length > 0) {
      log.error({ errors: report.errors }, `The tick finished with ${report.errors.length} errors.`);
      process.exitCode = 1;
    } else {
      log.info({ schedules: report.schedules, actions: report.actions.length }, "The tick finished.");
    }
  } catch (err) {
    log.error({ err }, `The tick failed: ${(err as Error).message}`);
    process.exitCode = 1;
  }
}

if (import.meta.main) await main();

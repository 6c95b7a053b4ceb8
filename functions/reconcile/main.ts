// Entry point of the reconcile function (a Knative Service): read the config once, build the handler, serve,
// and drain on SIGTERM. Everything else lives in server.ts (HTTP) and handler.ts (what events mean).
import { z } from "zod";
import { createLogger, logLevelSchema, type Logger } from "../../lib/log.ts";
import { createHandler } from "./handler.ts";
import { createServer, type ReconcileServer } from "./server.ts";

const configSchema = z.object({
  /** Knative Serving injects PORT. */
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /** Knative Serving injects the service's name; it names the function in every log line. */
  K_SERVICE: z.string().min(1).default("walle-reconcile"),
  /** When set, forced backups, restores and resyncs need `Authorization: Bearer <token>`. */
  WALLE_TRIGGER_TOKEN: z.string().min(1).optional(),
  LOG_LEVEL: logLevelSchema.default("info"),
});
type Config = z.infer<typeof configSchema>;

function readConfig(env: NodeJS.ProcessEnv): Config {
  const parsed = configSchema.safeParse(env);
  if (parsed.success) return parsed.data;
  // No logger yet: its level is part of what failed. One JSON line, like the logger would write.
  const msg = `Invalid configuration: ${z.prettifyError(parsed.error)}`;
  process.stdout.write(`${JSON.stringify({ level: "fatal", function: "walle-reconcile", msg })}\n`);
  process.exit(2);
}

/** SIGTERM (the platform scaling down) or SIGINT drains; a second signal exits at once. */
function exitOnSignals(server: ReconcileServer, log: Logger): void {
  let draining = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (draining) {
      log.warn({ signal, inFlight: server.inFlight }, "Received a second signal; exiting without draining");
      process.exit(1);
    }
    draining = true;
    log.info({ signal, inFlight: server.inFlight }, "Received signal; draining events in flight");
    server.close().then(
      () => {
        log.info("Drained; exiting");
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, "Failed to drain");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

async function main(): Promise<void> {
  const config = readConfig(process.env);
  const log = createLogger({ function: config.K_SERVICE, level: config.LOG_LEVEL });
  const handler = await createHandler({ log, env: process.env, triggerTokenConfigured: config.WALLE_TRIGGER_TOKEN !== undefined });
  const server = createServer({ handler, log, triggerToken: config.WALLE_TRIGGER_TOKEN });
  exitOnSignals(server, log);
  const address = await server.listen(config.PORT);
  log.info({ port: address.port, tokenRequired: config.WALLE_TRIGGER_TOKEN !== undefined }, "Started reconcile function");
}

if (import.meta.main) await main();

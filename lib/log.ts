// The logger every Walle function uses: pino JSON lines on stdout, which is what Kubernetes collects from a
// container, with the function's name on every line and secret-looking fields masked before they are written.
import { pino, type DestinationStream, type Logger } from "pino";
import { z } from "zod";

export type { Logger } from "pino";

/** LOG_LEVEL values, for the functions' zod config schemas. */
export const logLevelSchema = z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]);
export type LogLevel = z.infer<typeof logLevelSchema>;

// Field names that hold a secret wherever they appear. Walle never puts a secret into a log call on purpose
// (docs/architecture.md, Security); this is the net for the day something does (an HTTP request's headers, a pod's env, an error
// that carries its request). Names are matched exactly, so both spellings are listed where both occur.
const secretKeys = [
  "password",
  "passphrase",
  "token",
  "secret",
  "authorization",
  "Authorization",
  "cookie",
  "apiKey",
  "privateKey",
  "stringData",
  "RESTIC_PASSWORD",
  "RESTIC_REST_PASSWORD",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AZURE_ACCOUNT_KEY",
  "AZURE_ACCOUNT_SAS",
  "B2_ACCOUNT_KEY",
  "GOOGLE_ACCESS_TOKEN",
  "OS_PASSWORD",
  "WALLE_TRIGGER_TOKEN",
] as const;

// pino's paths are literal with `*` standing for one level, so each key is listed at the top level and up to
// two levels down (`req.headers.authorization`, `env.RESTIC_PASSWORD`). Deeper nesting is not worth the cost
// that every extra path adds to every log line.
export const redactPaths: readonly string[] = secretKeys.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);

export const redactCensor = "***";

export interface LoggerOptions {
  /** The function's name, on every line as `function`. */
  readonly function: string;
  readonly level?: LogLevel;
  /** Where lines go; stdout when unset. Tests pass a stream to read them back. */
  readonly destination?: DestinationStream;
}

export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      level: opts.level ?? "info",
      // Only the function's name: pid and hostname say nothing in a pod whose name the platform already records.
      base: { function: opts.function },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Level names, not numbers: log viewers and `jq 'select(.level=="error")'` read them without a table.
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: [...redactPaths], censor: redactCensor },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/**
 * Runs what a function needs before it can log (its configuration), and on failure writes one JSON line like
 * the logger would, then exits 2: there is no logger yet, since its level is part of what failed.
 */
export async function failStart<T>(fn: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ level: "fatal", function: fn, msg: (err as Error).message })}\n`);
    process.exit(2);
  }
}

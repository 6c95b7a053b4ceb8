// A function's configuration, parsed once at start from its environment and the operator config file (the
// original's format), then passed in: nothing below the entry point reads process.env or a file for it.
import { readFile as readFileAsync } from "node:fs/promises";
import { hostname } from "node:os";
import { z } from "zod";
import { operatorConfigSchema } from "../api/config.ts";
import { INSTALL_NAMESPACE } from "../api/constants.ts";
import { DEFAULT_PROGRESS_AUDIENCE, type WalleConfig } from "../core/builders.ts";
import { logLevelSchema, type LogLevel } from "../log.ts";

export type Env = Readonly<Record<string, string | undefined>>;

/** What the application layer needs besides the core's WalleConfig. */
export interface AppConfig extends WalleConfig {
  /** The repository Secret a forced backup uses when its request names none. */
  readonly defaultRepository?: string;
  /** This instance, as Events name their reporter. */
  readonly instance: string;
  /**
   * The audience a trigger's bearer token is meant for (`kubectl create token … --audience walle`); a token of the
   * API server's own audiences is accepted too. Any other audience is refused.
   */
  readonly tokenAudience: string;
}

/** What the HTTP shell of a function needs. */
export interface ServeConfig {
  /** Knative Serving injects PORT. */
  readonly port: number;
  /** Knative Serving injects the service's name; it names the function in every log line. */
  readonly service: string;
  /**
   * Opt-in, for callers outside the cluster: a request with `Authorization: Bearer <this token>` may trigger
   * anything, as an admin may. Every other trigger is authenticated and authorized by Kubernetes.
   */
  readonly triggerToken?: string;
  readonly logLevel: LogLevel;
  /**
   * The PingSource (of the install namespace) that fires this function: the tick of knative/ping. It starts only
   * while Knative Eventing's sender identity is on, else it says why on that PingSource (lib/app/sender-identity.ts).
   */
  readonly pingSource?: string;
}

export interface FunctionConfig {
  readonly walle: AppConfig;
  readonly serve: ServeConfig;
}

/** A configuration that cannot start the function: the message names each variable and the reason. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

const seconds = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const envSchema = z.object({
  WALLE_CONFIG: z.string().optional(),
  WALLE_WORKER_IMAGE: z.string().min(1).optional(),
  WALLE_CLUSTER_NAME: z.string().min(1).optional(),
  WALLE_INSTALL_NAMESPACE: z.string().default(INSTALL_NAMESPACE),
  WALLE_PROGRESS_SINK_URL: z.url().optional(),
  WALLE_DEFAULT_REPOSITORY: z.string().optional(),
  WALLE_WORKER_DEADLINE_SECONDS: seconds(6 * 3600),
  WALLE_SNAPSHOT_TIMEOUT_SECONDS: seconds(600),
  WALLE_HOOK_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(3600).default(60),
  WALLE_WORKER_BACKOFF_LIMIT: z.coerce.number().int().min(0).max(10).default(2),
  WALLE_MAX_WORKERS_PER_REPOSITORY: z.coerce.number().int().min(1).max(1000).default(4),
  WALLE_TRIGGER_TOKEN: z.string().min(1).optional(),
  WALLE_TOKEN_AUDIENCE: z.string().min(1).default("walle"),
  WALLE_PROGRESS_AUDIENCE: z.string().min(1).default(DEFAULT_PROGRESS_AUDIENCE),
  WALLE_PROGRESS_INTERVAL_SECONDS: z.coerce.number().int().min(1).max(3600).default(10),
  POD_NAME: z.string().optional(),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  K_SERVICE: z.string().min(1).optional(),
  LOG_LEVEL: logLevelSchema.default("info"),
  WALLE_PINGSOURCE: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "a PingSource's name")
    .optional(),
});

/**
 * Reads the configuration of the function named `service` (K_SERVICE wins when Knative sets it). Rejects with
 * ConfigError naming what is wrong; `readFile` is there for tests.
 */
export async function loadConfig(
  env: Env,
  service: string,
  readFile: (path: string) => Promise<string> = (p) => readFileAsync(p, "utf8"),
): Promise<FunctionConfig> {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) throw new ConfigError(`Invalid configuration: ${z.prettifyError(parsed.error)}`);
  const e = parsed.data;
  const file = e.WALLE_CONFIG ? await operatorFile(e.WALLE_CONFIG, readFile) : {};
  const workerImage = e.WALLE_WORKER_IMAGE ?? file.backup_job_image;
  const clusterName = e.WALLE_CLUSTER_NAME ?? file.cluster_name;
  if (!workerImage) throw new ConfigError("Invalid configuration: WALLE_WORKER_IMAGE (or backup_job_image in WALLE_CONFIG) is required");
  if (!clusterName) throw new ConfigError("Invalid configuration: WALLE_CLUSTER_NAME (or cluster_name in WALLE_CONFIG) is required");
  return {
    walle: {
      installNamespace: e.WALLE_INSTALL_NAMESPACE,
      clusterName,
      workerImage,
      snapClassMappings: file.snap_class_mappings ?? [],
      ...(e.WALLE_PROGRESS_SINK_URL ? { progressSinkUrl: e.WALLE_PROGRESS_SINK_URL } : {}),
      progressAudience: e.WALLE_PROGRESS_AUDIENCE,
      progressIntervalSeconds: e.WALLE_PROGRESS_INTERVAL_SECONDS,
      workerDeadlineSeconds: e.WALLE_WORKER_DEADLINE_SECONDS,
      snapshotTimeoutSeconds: e.WALLE_SNAPSHOT_TIMEOUT_SECONDS,
      hookTimeoutSeconds: e.WALLE_HOOK_TIMEOUT_SECONDS,
      workerBackoffLimit: e.WALLE_WORKER_BACKOFF_LIMIT,
      maxWorkersPerRepository: e.WALLE_MAX_WORKERS_PER_REPOSITORY,
      ...(e.WALLE_DEFAULT_REPOSITORY ? { defaultRepository: e.WALLE_DEFAULT_REPOSITORY } : {}),
      instance: e.POD_NAME ?? hostname(),
      tokenAudience: e.WALLE_TOKEN_AUDIENCE,
    },
    serve: {
      port: e.PORT,
      service: e.K_SERVICE ?? service,
      ...(e.WALLE_TRIGGER_TOKEN ? { triggerToken: e.WALLE_TRIGGER_TOKEN } : {}),
      logLevel: e.LOG_LEVEL,
      ...(e.WALLE_PINGSOURCE ? { pingSource: e.WALLE_PINGSOURCE } : {}),
    },
  };
}

async function operatorFile(path: string, readFile: (path: string) => Promise<string>) {
  let text: string;
  try {
    text = await readFile(path);
  } catch (err) {
    throw new ConfigError(`Invalid configuration: WALLE_CONFIG ${path} cannot be read: ${(err as Error).message}`);
  }
  // The YAML parser is loaded only for a config file: most installs set the environment alone. yaml is CommonJS:
  // Node's import gives its exports as `default` as well as by name, and the bundle's split chunk (scripts/bundle.ts)
  // as `default` alone, so `default` is where both have them (a Helm install, which sets WALLE_CONFIG, met this).
  const loaded: unknown = await import("yaml");
  const { parse: parseYaml } = (loaded as { default: typeof import("yaml") }).default;
  const parsed = operatorConfigSchema.partial().safeParse(parseYaml(text));
  if (!parsed.success) throw new ConfigError(`Invalid configuration: WALLE_CONFIG ${path}: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

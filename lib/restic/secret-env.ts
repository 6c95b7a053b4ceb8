// The repository Secret's part of a worker's environment (docs/security.md, "The repository Secret as a settings
// file"). A worker Job takes the Secret by envFrom with the prefix SECRET_, so no key of it can set a variable that
// the worker, Node or the image reads (NODE_OPTIONS, RESTIC_BINARY, PATH, LD_PRELOAD, TERMINATION_MESSAGE_PATH, …):
// each arrives as SECRET_<key>. The worker passes on only restic's documented repository and backend variables and
// three settings of the repository itself (the original Walle's INITIALIZE_REPO, and UNREACHABLE_TIMEOUT and
// LOCK_WAIT), and refuses every other key of the Secret by name. Restic's repository variables are taken from the
// Secret alone: set directly in the worker's environment, they are refused too, so nothing beside the Secret can
// point a worker at another repository. (RESTIC_PASSWORD_COMMAND is one of restic's variables: whoever writes the
// Secret runs that command in the worker, as restic would run it anywhere; docs/security.md says so.)

/** The prefix of the repository Secret's keys in a worker's environment (the worker Job's envFrom). */
export const SECRET_ENV_PREFIX = "SECRET_";

/** restic's repository and backend variables (restic's manual, "Environment Variables"), one by one. */
const REPOSITORY_VARIABLES: ReadonlySet<string> = new Set([
  "RESTIC_REPOSITORY",
  "RESTIC_REPOSITORY_FILE",
  "RESTIC_PASSWORD",
  "RESTIC_PASSWORD_FILE",
  "RESTIC_PASSWORD_COMMAND",
  "RESTIC_KEY_HINT",
  "RESTIC_CACERT",
  "RESTIC_TLS_CLIENT_CERT",
  "RESTIC_COMPRESSION",
  "RESTIC_PACK_SIZE",
  "RESTIC_READ_CONCURRENCY",
  "RESTIC_REST_USERNAME",
  "RESTIC_REST_PASSWORD",
  "ST_AUTH",
  "ST_USER",
  "ST_KEY",
  "RCLONE_BWLIMIT",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
]);

/** Whole families of backend variables: S3 (and restic's role assumption for it), Azure, B2, GCS, OpenStack Swift. */
const REPOSITORY_FAMILIES = ["AWS_", "RESTIC_AWS_ASSUME_ROLE_", "AZURE_", "B2_", "GOOGLE_", "OS_"] as const;

/**
 * Worker settings a repository Secret may hold as well, each about the repository itself and each a checked value
 * (a boolean or a duration): the original Walle's INITIALIZE_REPO, and how long to retry an unreachable repository
 * (UNREACHABLE_TIMEOUT) or wait for its lock (LOCK_WAIT).
 */
const SECRET_SETTINGS: ReadonlySet<string> = new Set(["INITIALIZE_REPO", "UNREACHABLE_TIMEOUT", "LOCK_WAIT"]);
const SECRET_SETTINGS_TEXT = [...SECRET_SETTINGS].join(", ");

export function isRepositoryVariable(name: string): boolean {
  return REPOSITORY_VARIABLES.has(name) || REPOSITORY_FAMILIES.some((f) => name.startsWith(f));
}

/** Whether a repository Secret may hold the key: a repository variable or one of the repository's settings. */
export function secretKeyAllowed(key: string): boolean {
  return isRepositoryVariable(key) || SECRET_SETTINGS.has(key);
}

type Env = Readonly<Record<string, string | undefined>>;

export interface SplitEnvironment {
  /** What the worker reads: its own settings, with the Secret's allowed keys under their own names beneath them. */
  readonly env: Record<string, string>;
  /** One line per key refused, naming it. */
  readonly refused: readonly string[];
}

/**
 * The worker's environment with the Secret's keys put back under their own names. A setting Walle gives the worker
 * directly (INITIALIZE_REPO=false on all but one worker of a first run) wins over the Secret's.
 */
export function splitEnvironment(env: Env): SplitEnvironment {
  const fromSecret: Record<string, string> = {};
  const own: Record<string, string> = {};
  const refused: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue;
    if (name.startsWith(SECRET_ENV_PREFIX)) {
      const key = name.slice(SECRET_ENV_PREFIX.length);
      if (secretKeyAllowed(key)) fromSecret[key] = value;
      else
        refused.push(
          `the repository Secret's key ${key} is not one of restic's repository variables (a Secret may hold only those, and ${SECRET_SETTINGS_TEXT})`,
        );
    } else if (isRepositoryVariable(name)) {
      refused.push(`${name} is set outside the repository Secret (restic's repository variables come only from it, as ${SECRET_ENV_PREFIX}${name})`);
    } else {
      own[name] = value;
    }
  }
  return { env: { ...fromSecret, ...own }, refused };
}

/**
 * The environment a worker pod gets from a repository Secret's data and the settings Walle gives it, as the
 * kubelet builds it from the worker Job's envFrom (with its prefix) and env: for running a worker outside a pod.
 */
export function podEnvironment(secret: Env, settings: Env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(secret)) if (v !== undefined) out[`${SECRET_ENV_PREFIX}${k}`] = v;
  for (const [k, v] of Object.entries(settings)) if (v !== undefined) out[k] = v;
  return out;
}

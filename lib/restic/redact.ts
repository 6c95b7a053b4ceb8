// Keeping secrets out of logs, errors and termination messages.
//
// Two layers, because neither alone is enough: credentials embedded in a URL are masked by shape (so a repository
// URL can be logged at all), and the values of every secret-looking environment variable are masked wherever they
// appear (so a message from restic or a backend that happens to echo one cannot leak it).

const mask = "***";

// `scheme://user:password@host`: keeps the user, which helps debugging and is not the secret, as restic does in
// its own messages.
const urlCredentials = /([a-z][a-z0-9+.-]*:\/\/[^/@\s:]*):[^/@\s]*@/gi;

/** A URL (or restic repository string such as `rest:https://u:p@host/repo`) with its password masked. */
export function redactUrl(text: string): string {
  return text.replace(urlCredentials, `$1:${mask}@`);
}

// Names of restic's and its backends' variables that carry secrets: RESTIC_PASSWORD, RESTIC_REST_PASSWORD,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, B2_ACCOUNT_KEY, AZURE_ACCOUNT_KEY, AZURE_ACCOUNT_SAS, OS_PASSWORD,
// GOOGLE_ACCESS_TOKEN, ST_KEY, RESTIC_PASSWORD_COMMAND (it may hold the password inline), and the like.
const secretName = /PASSWORD|PASSPHRASE|SECRET|TOKEN|CREDENTIAL|_KEY$|_SAS$|^ST_KEY$/i;
// A *_FILE variable names where a secret lives, not the secret itself.
const referenceName = /_FILE$/i;

export function isSecretName(name: string): boolean {
  return secretName.test(name) && !referenceName.test(name);
}

/** The secret values of an environment: secret-looking variables, and passwords embedded in URLs. */
export function secretValues(env: Readonly<Record<string, string | undefined>>): string[] {
  const values = new Set<string>();
  for (const [name, value] of Object.entries(env)) {
    if (!value) continue;
    if (isSecretName(name)) values.add(value);
    for (const match of value.matchAll(urlCredentials)) {
      const password = match[0].slice(match[1]?.length ?? 0).replace(/^:|@$/g, "");
      if (password) values.add(password);
    }
  }
  return [...values];
}

export type Redactor = (text: string) => string;

/**
 * A function that masks the given secrets and any URL credentials in a text. Longer secrets are masked first,
 * so a secret that contains another is not left half visible.
 */
export function makeRedactor(secrets: readonly string[]): Redactor {
  const ordered = [...new Set(secrets.filter((s) => s.length > 0))].sort((a, b) => b.length - a.length);
  return (text) => {
    let out = redactUrl(text);
    for (const secret of ordered) out = out.split(secret).join(mask);
    return out;
  };
}

/** Pieces shorter than this are not masked alone: they would mask ordinary words too. */
const MIN_PIECE = 4;

/**
 * The pieces of a repository string that say where it is: the string itself (and with its password masked), and
 * its host, user and path, for `rest:https://user:pw@host:8000/path`, `s3:host/bucket/path`, `sftp:user@host:/path`
 * or a local path alike. Masked as secrets, they keep a repository's location out of a tenant's view.
 */
export function repositoryLocation(repository: string): string[] {
  const pieces = new Set<string>([repository, redactUrl(repository)]);
  // restic's backend prefix (rest:, s3:, sftp:, b2:, azure:, gs:, swift:, rclone:), when there is one.
  const rest = /^[a-z][a-z0-9]*:(?!\/\/)(.*)$/i.exec(repository)?.[1] ?? repository;
  pieces.add(rest);
  try {
    const url = new URL(rest);
    for (const p of [url.host, url.hostname, url.username, url.pathname]) pieces.add(decodeURIComponent(p));
  } catch {
    // Not a URL: host/bucket/path, user@host:/path, or a path. Its segments are the location.
    for (const p of rest.split(/[/@:]+/)) pieces.add(p);
    pieces.add(rest.replace(/^[^/]*/, ""));
  }
  return [...pieces].filter((p) => p.length >= MIN_PIECE && p !== "/");
}

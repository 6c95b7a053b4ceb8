// restic's exit codes and what each means to a user (restic 0.17 and later; see docs/architecture.md, restic).
// restic 0.14, as shipped in Debian bookworm, knows only 0, 1 and 3: its "no repository", "locked" and "wrong
// password" all exit 1, which is why outcome.ts also reads restic's messages.

export const ResticExit = {
  ok: 0,
  fatal: 1,
  sourceUnreadable: 3,
  noRepository: 10,
  lockFailed: 11,
  wrongPassword: 12,
  cancelled: 130,
} as const;

export type ResticExitCode = (typeof ResticExit)[keyof typeof ResticExit];

const meanings: Record<ResticExitCode, string> = {
  0: "success",
  1: "fatal error, no snapshot was made",
  3: "some source files could not be read, the snapshot was made without them",
  10: "the repository does not exist",
  11: "the repository lock could not be taken",
  12: "wrong password",
  130: "cancelled",
};

function isKnownExit(code: number): code is ResticExitCode {
  return Object.hasOwn(meanings, code);
}

/** A short meaning of an exit code (null: restic was ended by a signal before it could choose one). */
export function exitMeaning(code: number | null, signal?: string | null): string {
  if (code === null) return signal ? `ended by signal ${signal}` : "ended without an exit code";
  return isKnownExit(code) ? meanings[code] : `unknown exit code ${code}`;
}

// Times and durations in the forms restic and Kubernetes use.

/**
 * A snapshot time from the environment: RFC 3339 (a VolumeSnapshot's `creationTime`, `2024-05-01T02:00:00Z`), or
 * restic's own `2024-05-01 02:00:00` read as UTC, the form the original Walle passed. Undefined when neither.
 */
export function parseSnapshotTime(text: string): Date | undefined {
  const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
  const restic = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/;
  let ms = Number.NaN;
  if (rfc3339.test(text)) ms = Date.parse(text);
  else if (restic.test(text)) ms = Date.parse(`${text.replace(" ", "T")}Z`);
  return Number.isNaN(ms) ? undefined : new Date(ms);
}

/**
 * The `--time` argument for a date. restic reads it in its local time zone and has no way to name one, so the
 * worker formats it in UTC and runs restic with TZ=UTC (see args.ts `resticEnvironment`).
 */
export function resticTime(date: Date): string {
  return date.toISOString().slice(0, 19).replace("T", " ");
}

const durationUnits: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1 };

/**
 * A Go duration as restic's `--retry-lock` takes it (`90s`, `5m`, `1h30m`), in milliseconds; undefined when the
 * text is not one. Only non-negative whole units: nothing in the worker needs more.
 */
export function parseGoDuration(text: string): number | undefined {
  if (!/^(\d+(h|ms|m|s))+$/.test(text)) return undefined;
  let total = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)(h|ms|m|s)/g)) total += Number(n) * (durationUnits[unit ?? ""] ?? 0);
  return total;
}

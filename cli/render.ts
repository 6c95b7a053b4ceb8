// How kubectl walle prints: kubectl's tables (upper-case headers, columns three spaces apart, `--no-headers`),
// `-o json` (one object, or a v1 List) and `-o yaml`, kubectl's ages, and a progress bar. Pure: every function
// returns text, and colour is asked for by the caller, which gives it only to a terminal.
import { stringify } from "yaml";
import type { Progress } from "../lib/api/common.ts";
import { formatBytes } from "../lib/format.ts";

export type OutputFormat = "table" | "json" | "yaml";

export interface Column<T> {
  readonly header: string;
  readonly value: (row: T) => string;
}

/** Rows as kubectl prints them: each column as wide as its widest cell, three spaces apart, the last unpadded. */
export function table<T>(columns: readonly Column<T>[], rows: readonly T[], o: { noHeaders?: boolean } = {}): string {
  const cells = [...(o.noHeaders ? [] : [columns.map((c) => c.header.toUpperCase())]), ...rows.map((r) => columns.map((c) => c.value(r) || "<none>"))];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => (line[i] ?? "").length)));
  return cells
    .map((line) =>
      line
        .map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd((widths[i] ?? 0) + 3)))
        .join("")
        .trimEnd(),
    )
    .join("\n");
}

/** Objects as `kubectl get -o json|yaml` prints them: one object alone, several as a v1 List. */
export function printObjects(objects: readonly unknown[], format: "json" | "yaml"): string {
  const doc = objects.length === 1 ? objects[0] : { apiVersion: "v1", kind: "List", items: objects, metadata: { resourceVersion: "" } };
  return format === "json" ? JSON.stringify(doc, null, 4) : stringify(doc).trimEnd();
}

/** A duration as kubectl's ages read (apimachinery's HumanDuration): 45s, 3m20s, 17m, 5h30m, 30h, 3d4h, 12d, 2y40d. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 192) return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const dy = Math.floor(hours / 24) % 365;
    return dy === 0 ? `${Math.floor(hours / 24 / 365)}y` : `${Math.floor(hours / 24 / 365)}y${dy}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}

/** The age of an RFC 3339 time at `now`, or "" when there is none. */
export function age(time: string | undefined, now: Date): string {
  const t = time ? Date.parse(time) : NaN;
  return Number.isFinite(t) ? humanDuration(now.getTime() - t) : "";
}

/** Until an RFC 3339 time: "in 5h30m", or "due" once it has passed. */
export function until(time: string | undefined, now: Date): string {
  const t = time ? Date.parse(time) : NaN;
  if (!Number.isFinite(t)) return "";
  return t <= now.getTime() ? "due" : `in ${humanDuration(t - now.getTime())}`;
}

const BAR = 30;

/**
 * One line of progress from a BackupJob's or BackupRestore's status.progress: a bar, the percentage, bytes and
 * files done of their totals as far as restic knows them, and restic's estimate of the time left.
 */
export function progressLine(p: Progress, o: { color?: boolean } = {}): string {
  const filled = Math.round((Math.min(100, Math.max(0, p.percent)) / 100) * BAR);
  const bar = `${"#".repeat(filled)}${".".repeat(BAR - filled)}`;
  const parts = [`[${o.color ? `\x1b[32m${bar.slice(0, filled)}\x1b[0m${bar.slice(filled)}` : bar}]`, `${p.percent.toFixed(0).padStart(3)}%`];
  if (p.bytesDone !== undefined)
    parts.push(p.totalBytes !== undefined ? `${formatBytes(p.bytesDone)} / ${formatBytes(p.totalBytes)}` : formatBytes(p.bytesDone));
  if (p.filesDone !== undefined) parts.push(p.totalFiles !== undefined ? `${p.filesDone} / ${p.totalFiles} files` : `${p.filesDone} files`);
  if (p.secondsRemaining !== undefined) parts.push(`ETA ${humanDuration(p.secondsRemaining * 1000)}`);
  return parts.join("  ");
}

/** Text in a colour, when the output is a terminal. */
export function paint(text: string, colour: "red" | "green" | "yellow", on: boolean): string {
  const code = { red: 31, green: 32, yellow: 33 }[colour];
  return on ? `\x1b[${code}m${text}\x1b[0m` : text;
}

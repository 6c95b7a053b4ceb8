// Progress of a backup or restore: to the log, and as CloudEvents to a sink, both at a bounded rate.
//
// The sink is best effort. The reconcile function shows progress on the BackupJob, but a backup must never fail
// or slow down because nobody is listening: a POST that is still in flight when the next report is due makes
// that report skip the sink, every POST has a short timeout, and failures are logged once.
import { readFile } from "node:fs/promises";
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { Progress } from "../../lib/restic/messages.ts";
import { progressEventSource, progressEventType, type ProgressKind } from "../../lib/restic/progress.ts";

export interface ProgressOptions {
  kind: ProgressKind;
  intervalMs: number;
  log: Logger;
  /** Where progress goes; `tokenFile` holds the pod's progress token, read afresh for each report (it rotates). */
  sink?: { url: string; subject?: string; tokenFile?: string };
  now?: () => number;
  /** The HTTP client; fetch unless a test says otherwise. */
  post?: typeof fetch;
}

const sinkTimeoutMs = 5_000;
const closeGraceMs = 1_000;

/** The progress CloudEvent, as binary-mode HTTP headers and body. */
export async function progressMessage(kind: ProgressKind, progress: Progress, subject?: string): Promise<{ headers: Record<string, string>; body: string }> {
  // Loaded on first use: most workers have no sink, and every millisecond of start-up counts against restic's time.
  // cloudevents is CommonJS: Node's import gives its exports as `default` as well as by name, and the bundle's split
  // chunk (scripts/bundle.ts) as `default` alone, so `default` is where both have them.
  const loaded: unknown = await import("cloudevents");
  const { CloudEvent, HTTP } = (loaded as { default: typeof import("cloudevents") }).default;
  const event = new CloudEvent<Progress>({
    id: randomUUID(),
    type: progressEventType(kind),
    source: progressEventSource,
    ...(subject ? { subject } : {}),
    datacontenttype: "application/json",
    data: progress,
  });
  const message = HTTP.binary(event);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers)) if (value !== undefined) headers[name] = String(value);
  return { headers, body: typeof message.body === "string" ? message.body : JSON.stringify(progress) };
}

export class ProgressReporter {
  readonly #o: ProgressOptions;
  readonly #now: () => number;
  readonly #post: typeof fetch;
  #lastAt: number | undefined;
  #inFlight: Promise<void> | undefined;
  #sinkFailed = false;
  readonly #abort = new AbortController();

  constructor(options: ProgressOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#post = options.post ?? fetch;
  }

  /** Takes one status from restic; reports it only when the interval has passed since the last report. */
  report(progress: Progress): void {
    const now = this.#now();
    if (this.#lastAt !== undefined && now - this.#lastAt < this.#o.intervalMs) return;
    this.#lastAt = now;
    this.#o.log.info({ progress }, `${capitalise(this.#o.kind)} at ${(progress.percentDone * 100).toFixed(1)}%.`);
    if (this.#o.sink && !this.#inFlight) this.#inFlight = this.#send(this.#o.sink, progress).finally(() => (this.#inFlight = undefined));
  }

  /**
   * Gives a POST still in flight a short grace, then abandons it: once restic is done, the result travels in the
   * termination message, and a slow sink must not hold the Job open.
   */
  async close(): Promise<void> {
    if (!this.#inFlight) return;
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, closeGraceMs)));
    await Promise.race([this.#inFlight, grace]);
    clearTimeout(timer);
    this.#abort.abort();
    await this.#inFlight;
  }

  async #send(sink: NonNullable<ProgressOptions["sink"]>, progress: Progress): Promise<void> {
    const signal = AbortSignal.any([AbortSignal.timeout(sinkTimeoutMs), this.#abort.signal]);
    try {
      const { headers, body } = await progressMessage(this.#o.kind, progress, sink.subject);
      if (sink.tokenFile) headers.authorization = `Bearer ${(await readFile(sink.tokenFile, "utf8")).trim()}`;
      const response = await this.#post(sink.url, { method: "POST", headers, body, signal });
      await response.body?.cancel();
      if (!response.ok) this.#failed(`HTTP ${response.status}`);
    } catch (error) {
      this.#failed(error instanceof Error ? error.message : String(error));
    }
  }

  #failed(why: string): void {
    if (this.#sinkFailed || this.#abort.signal.aborted) return;
    this.#sinkFailed = true;
    this.#o.log.warn({ why }, "Progress sink did not accept progress; progress continues in the log only.");
  }
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// A command run in a container through the API server's pods/exec, as `kubectl exec` runs it: a WebSocket in the
// Kubernetes channel protocol (v5.channel.k8s.io, else v4), the API server proxying to the kubelet of the pod's
// node. Each message's first byte names its channel: 1 stdout, 2 stderr, 3 the command's end as a Status (its
// exit code in details.causes[reason=ExitCode]). Only the tail of the output is kept: it is for a person to read.
import WebSocket from "ws";
import { z } from "zod";
import { objectPath } from "./paths.ts";
import { ApiError, type RestClient } from "./rest.ts";

export interface ExecTarget {
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
}

export interface ExecResult {
  /** The command's exit code; undefined when it did not run to an end (it could not start, or timed out). */
  readonly exitCode?: number;
  /** The last `keep` bytes of what it wrote to stdout and stderr, in the order they came. */
  readonly output: string;
  readonly timedOut: boolean;
  /** Why it did not run, or did not end, in the API server's or the runtime's words. */
  readonly error?: string;
}

const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;

const statusSchema = z.looseObject({
  status: z.string().optional(),
  reason: z.string().optional(),
  message: z.string().optional(),
  details: z.looseObject({ causes: z.array(z.looseObject({ reason: z.string().optional(), message: z.string().optional() })).optional() }).optional(),
});

/** The exit code a Status on the error channel reports: 0 for Success, the ExitCode cause otherwise. */
export function exitCodeOf(status: z.infer<typeof statusSchema>): number | undefined {
  if (status.status === "Success") return 0;
  const code = status.details?.causes?.find((c) => c.reason === "ExitCode")?.message;
  return code !== undefined && /^\d+$/.test(code) ? Number(code) : undefined;
}

/** The last `keep` bytes of a stream, kept as it grows. */
class Tail {
  #chunks: Buffer[] = [];
  #size = 0;
  readonly keep: number;
  constructor(keep: number) {
    this.keep = keep;
  }
  push(b: Buffer): void {
    this.#chunks.push(b);
    this.#size += b.length;
    while (this.#chunks.length > 1 && this.#size - (this.#chunks[0]?.length ?? 0) >= this.keep) this.#size -= this.#chunks.shift()?.length ?? 0;
  }
  text(): string {
    const all = Buffer.concat(this.#chunks);
    return all.subarray(Math.max(0, all.length - this.keep)).toString("utf8");
  }
}

/**
 * Runs `command` (no shell unless it names one) in a container and waits up to `timeoutMs` for it to end. A
 * refusal of the API server (RBAC, admission, no such pod) rejects with its ApiError; anything that happened
 * once the command was asked for is in the result. Past the deadline Walle stops waiting and closes the stream;
 * the runtime may let the command run on, as it does for `kubectl exec`.
 */
export interface ExecOptions {
  /** Bytes of output kept (default 2048). */
  readonly keep?: number;
  /** Where stdout goes instead of the result: written as it comes, the command held while `stdout` is full. */
  readonly stdout?: NodeJS.WritableStream;
  /** Aborted: Walle stops waiting and closes the stream, as at the deadline. */
  readonly signal?: AbortSignal;
}

export async function execInContainer(
  api: RestClient,
  target: ExecTarget,
  command: readonly string[],
  timeoutMs: number,
  opts: ExecOptions = {},
): Promise<ExecResult> {
  const keep = opts.keep ?? 2048;
  const { url, headers, agent } = await api.connection(`${objectPath("Pod", target.pod, target.namespace)}/exec`, {
    container: target.container,
    stdout: true,
    stderr: true,
  });
  for (const c of command) url.searchParams.append("command", c);
  url.protocol = url.protocol === "http:" ? "ws:" : "wss:";
  const output = new Tail(keep);
  return new Promise<ExecResult>((resolve, reject) => {
    let settled = false;
    let status: z.infer<typeof statusSchema> | undefined;
    const ws = new WebSocket(url, ["v5.channel.k8s.io", "v4.channel.k8s.io"], { agent, headers, handshakeTimeout: Math.min(timeoutMs, 30_000) });
    const finish = (r: ExecResult | Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    const timer = setTimeout(() => {
      finish({ output: output.text(), timedOut: true, error: `the command did not end within ${timeoutMs / 1000} s` });
      ws.terminate();
    }, timeoutMs);
    ws.on("unexpected-response", (_req, res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        const parsed = statusSchema.safeParse(safeJson(text));
        const s = parsed.success ? parsed.data : {};
        finish(
          new ApiError(
            res.statusCode ?? 0,
            s.reason ?? "Unknown",
            `exec in pod ${target.namespace}/${target.pod}: ${res.statusCode} ${s.message ?? text.slice(0, 500)}`,
          ),
        );
      });
    });
    const sink = opts.stdout;
    const onAbort = () => {
      finish({ output: output.text(), timedOut: false, error: "the reader of its output went away" });
      ws.terminate();
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    ws.on("message", (data: Buffer) => {
      const channel = data[0];
      const body = data.subarray(1);
      if (channel === STDOUT && sink) {
        // Backpressure: the container's output waits while the reader is behind.
        if (!sink.write(body)) {
          ws.pause();
          sink.once("drain", () => ws.resume());
        }
      } else if (channel === STDOUT || channel === STDERR) output.push(body);
      else if (channel === ERROR && body.length > 0)
        status = statusSchema.safeParse(safeJson(body.toString("utf8"))).data ?? { message: body.toString("utf8") };
    });
    ws.on("close", () => {
      const exitCode = status ? exitCodeOf(status) : undefined;
      const error = exitCode === undefined ? (status?.message ?? "the stream closed before the command's end was reported") : undefined;
      finish({ ...(exitCode !== undefined ? { exitCode } : {}), output: output.text(), timedOut: false, ...(error ? { error } : {}) });
    });
    ws.on("error", (err) => finish(err));
  });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

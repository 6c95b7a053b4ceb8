// Watching restic retry a backend it cannot reach.
//
// restic retries a failing backend request with backoff for up to 15 minutes before it gives up (and an unknown
// host or a refused connection is not a "permanent" error to it). A worker that sits silent for 15 minutes
// before saying "unreachable" serves nobody, so the worker stops restic once the backend has failed without a
// single success for a bounded time. restic announces both sides on stderr:
//   Stat(<config/>) returned error, retrying after 1.03s: Head "http://…/config": dial tcp …: connection refused
//   Save(<data/1a2b3c4d5e>) operation successful after 2 retries

const retrying = /returned error, retrying after [^:]+: (.+)$/;
const recovered = /operation successful after \d+ retr/;

export class BackendRetryWatch {
  #failingSince: number | undefined;
  #lastError: string | undefined;

  /** Takes note of one stderr line seen at `now` (milliseconds). */
  observe(line: string, now: number): void {
    const failure = retrying.exec(line);
    if (failure) {
      this.#failingSince ??= now;
      this.#lastError = failure[1];
    } else if (recovered.test(line)) {
      this.#failingSince = undefined;
      this.#lastError = undefined;
    }
  }

  /** When restic started failing without recovering since, if it is failing now. */
  get failingSince(): number | undefined {
    return this.#failingSince;
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** True once the backend has failed for `limitMs` with no success in between. */
  exhausted(now: number, limitMs: number): boolean {
    return this.#failingSince !== undefined && now - this.#failingSince >= limitMs;
  }
}

// At most one pass per key per interval, in bounded memory: a worker reports progress every second or so, and a
// status write costs more than it shows. Time is passed in. Losing this state when the function scales to zero
// costs one extra write, nothing more.
export class Throttle {
  private readonly last = new Map<string, number>();
  private readonly intervalMs: number;
  private readonly maxKeys: number;

  constructor(intervalMs: number, maxKeys: number) {
    this.intervalMs = intervalMs;
    this.maxKeys = maxKeys;
  }

  /** Whether `key` may pass at `nowMs`; when it may, the pass is recorded. */
  allow(key: string, nowMs: number): boolean {
    const last = this.last.get(key);
    if (last !== undefined && nowMs - last < this.intervalMs) return false;
    // Re-inserting keeps the map in order of last pass, oldest first.
    this.last.delete(key);
    this.last.set(key, nowMs);
    this.evict(nowMs);
    return true;
  }

  /** Keys remembered now. */
  get size(): number {
    return this.last.size;
  }

  /** Drops keys whose interval has passed (they would pass anyway), and the oldest beyond the cap. */
  private evict(nowMs: number): void {
    for (const [key, at] of this.last) {
      if (nowMs - at < this.intervalMs && this.last.size <= this.maxKeys) break;
      this.last.delete(key);
    }
  }
}

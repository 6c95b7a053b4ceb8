import { describe, expect, it } from "vitest";
import { longestChain, peak, type Run } from "../../bench/scale.ts";

const r = (start: number, end: number): Run => ({ start, end });

describe("the scale benchmark's worker arithmetic", () => {
  it.each([
    { name: "no runs", runs: [], chain: 0, most: 0 },
    { name: "one run", runs: [r(0, 5)], chain: 5, most: 1 },
    { name: "back to back: one chain", runs: [r(0, 2), r(2, 5), r(5, 6)], chain: 6, most: 1 },
    { name: "side by side: the longer one", runs: [r(0, 4), r(0, 3)], chain: 4, most: 2 },
    { name: "a gap is not in the chain", runs: [r(0, 2), r(10, 12)], chain: 4, most: 1 },
    { name: "two lanes, the longer path wins", runs: [r(0, 3), r(0, 1), r(1, 2), r(3, 4), r(2, 9)], chain: 9, most: 2 },
    { name: "overlap is not a chain", runs: [r(0, 3), r(2, 5)], chain: 3, most: 2 },
  ])("$name: chain $chain, peak $most", ({ runs, chain, most }) => {
    expect(longestChain(runs)).toBe(chain);
    expect(peak(runs)).toBe(most);
  });
});

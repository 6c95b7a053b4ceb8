import { describe, expect, it } from "vitest";
import { LineDecoder, maxLineLength } from "../../lib/restic/lines.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

function decode(chunks: Uint8Array[]): string[] {
  const d = new LineDecoder();
  return [...chunks.flatMap((c) => d.push(c)), ...d.end()];
}

describe("line decoding", () => {
  it.each([
    { name: "whole lines", chunks: ["a\nb\n"], want: ["a", "b"] },
    { name: "a line split across reads", chunks: ['{"message_type":', '"status"}\n'], want: ['{"message_type":"status"}'] },
    { name: "several lines and a half", chunks: ["1\n2\n3", "4\n"], want: ["1", "2", "34"] },
    { name: "a last line without newline", chunks: ["x\ny"], want: ["x", "y"] },
    { name: "CRLF endings", chunks: ["a\r\nb\r\n"], want: ["a", "b"] },
    { name: "empty lines kept", chunks: ["\n\n"], want: ["", ""] },
    { name: "nothing", chunks: [], want: [] },
  ])("$name", ({ chunks, want }) => {
    expect(decode(chunks.map(bytes))).toEqual(want);
  });

  it("joins a UTF-8 character cut between two reads", () => {
    const all = bytes("ünï 日本\n");
    const cuts = [1, 2, 5, 7, 9];
    const chunks = cuts.map((c, i) => all.slice(i === 0 ? 0 : cuts[i - 1], c));
    chunks.push(all.slice(cuts.at(-1)));
    expect(decode(chunks)).toEqual(["ünï 日本"]);
  });

  it("feeds byte by byte", () => {
    const all = bytes('{"a":"é"}\n{"b":1}\n');
    expect(decode([...all].map((b) => Uint8Array.of(b)))).toEqual(['{"a":"é"}', '{"b":1}']);
  });

  it("passes on a line longer than the limit instead of buffering it forever", () => {
    const d = new LineDecoder();
    expect(d.push(bytes("x".repeat(maxLineLength + 1)))).toHaveLength(1);
    expect(d.end()).toEqual([]);
  });
});

// Splitting a byte stream into lines, for restic's `--json` output.
//
// A pipe delivers whatever the kernel had: half a JSON line, three and a half lines, or a UTF-8 character cut in
// two (file names in status lines are often non-ASCII). So bytes are decoded in streaming mode and text is
// buffered until a newline arrives; only whole lines are handed on.

/** A line longer than this is passed on unfinished rather than buffered without bound. */
export const maxLineLength = 64 * 1024 * 1024;

export class LineDecoder {
  readonly #decoder = new TextDecoder("utf-8");
  #partial = "";

  /** The complete lines that this chunk finishes, without their line endings. */
  push(chunk: Uint8Array): string[] {
    return this.#split(this.#partial + this.#decoder.decode(chunk, { stream: true }));
  }

  /** The rest, once the stream has ended: a last line that had no newline. */
  end(): string[] {
    const rest = this.#partial + this.#decoder.decode();
    this.#partial = "";
    return rest.length > 0 ? [stripCarriageReturn(rest)] : [];
  }

  #split(text: string): string[] {
    const parts = text.split("\n");
    let partial = parts.pop() ?? "";
    const lines = parts.map(stripCarriageReturn);
    if (partial.length > maxLineLength) {
      lines.push(partial);
      partial = "";
    }
    this.#partial = partial;
    return lines;
  }
}

// A "\r\n" line ending must not make a JSON line unparsable. (ANSI codes, which restic writes even through a pipe
// on some messages, are a matter of text, not of line splitting: messages.ts removes them.)
function stripCarriageReturn(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}

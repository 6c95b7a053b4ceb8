// What every bench group returns: its figures, each beside its target (bench/main.ts prints them).

export interface Figure {
  /** Stable, dotted: `<group>.<what>`. */
  name: string;
  value: number;
  unit: string;
  /** The most the value may be (every target of docs/architecture.md, Targets is an upper bound); null for a figure only reported. */
  target: number | null;
  ok: boolean;
}

/** A figure, met when it is at most its target (or when it has none: it is only reported). */
export const figure = (name: string, value: number, unit: string, target: number | null): Figure => ({
  name,
  value,
  unit,
  target,
  ok: target === null || value <= target,
});

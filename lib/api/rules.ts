import type { z } from "zod";

// A validation rule is written once and enforced twice: as a CEL rule (`x-kubernetes-validations`) that the
// kube-apiserver runs at admission, and as a zod refinement that runs when Walle parses an object it read.
// Both sides get the same message, so a user sees the same words from `kubectl apply` and from a Failed status.

/** The metadata key the CRD generator copies into the OpenAPI schema. */
export const VALIDATIONS = "x-kubernetes-validations";

/** One entry of `x-kubernetes-validations`, as the apiextensions.k8s.io/v1 API spells it. */
export interface CelValidation {
  readonly rule: string;
  readonly message: string;
  readonly fieldPath?: string;
}

/** A rule over a value of type T: a CEL expression over `self` and the same predicate in TypeScript. */
export interface Rule<T> {
  readonly cel: string;
  readonly message: string;
  /** Where the apiserver reports a failure, relative to the rule's node (`.timezone`); also the zod issue path. */
  readonly fieldPath?: string;
  readonly holds: (value: T) => boolean;
}

/** A CEL string literal. Escaped by hand rather than as a raw string, which older CEL parsers lack. */
export function celString(value: string): string {
  return `'${value.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}

/**
 * A rule that the whole string matches `regex`. The regex must be valid in both RE2 (CEL's `matches`) and
 * JavaScript, so keep to anchors, classes, groups, alternation and counted repetition.
 */
export function matches(regex: string, message: string): Rule<string> {
  const re = new RegExp(regex);
  return { cel: `self.matches(${celString(regex)})`, message, holds: (value) => re.test(value) };
}

/** A rule that the string does not match `regex`. */
export function doesNotMatch(regex: string, message: string): Rule<string> {
  const re = new RegExp(regex);
  return { cel: `!self.matches(${celString(regex)})`, message, holds: (value) => !re.test(value) };
}

/** A rule that holds when any of `rules` holds, reported with its own message. */
export function anyOf(message: string, ...rules: readonly Rule<string>[]): Rule<string> {
  return {
    cel: rules.map((rule) => `(${rule.cel})`).join(" || "),
    message,
    holds: (value) => rules.some((rule) => rule.holds(value)),
  };
}

function pathOf(fieldPath: string | undefined): string[] {
  return fieldPath === undefined ? [] : fieldPath.split(".").filter((part) => part !== "");
}

/** Adds CEL validations to a schema's metadata, keeping those it has. */
export function withCel<S extends z.ZodType>(schema: S, validations: readonly CelValidation[]): S {
  const meta = schema.meta() ?? {};
  const existing = (meta[VALIDATIONS] as readonly CelValidation[] | undefined) ?? [];
  return schema.meta({ ...meta, [VALIDATIONS]: [...existing, ...validations] });
}

function toCel<T>(rule: Rule<T>): CelValidation {
  return rule.fieldPath === undefined ? { rule: rule.cel, message: rule.message } : { rule: rule.cel, message: rule.message, fieldPath: rule.fieldPath };
}

/**
 * Applies rules to a schema on both sides. Apply them to the innermost schema (before `.optional()` or
 * `.default()`): the CRD generator merges a wrapper's metadata over its inner schema's.
 */
export function withRules<S extends z.ZodType>(schema: S, ...rules: readonly Rule<z.output<S>>[]): S {
  let checked = schema;
  for (const rule of rules) {
    checked = checked.refine((value) => rule.holds(value), { message: rule.message, path: pathOf(rule.fieldPath) });
  }
  return withCel(checked, rules.map(toCel));
}

/**
 * A transition rule: the value may not change once created. It runs only on updates (CEL's `oldSelf`), so it has
 * no zod side: a single parse never sees two versions.
 */
export function immutable<S extends z.ZodType>(schema: S, message: string): S {
  return withCel(schema, [{ rule: "self == oldSelf", message }]);
}

import type { CelValidation } from "./rules.ts";
import { VALIDATIONS } from "./rules.ts";

// zod emits JSON Schema (draft 2020-12); a CRD wants a structural OpenAPI v3.0 schema. This walks zod's output
// and keeps only what apiextensions.k8s.io/v1 accepts, translating where the two dialects differ. Anything it
// does not know (unions, $ref, ...) is an error, so a schema the apiserver would reject or misread never gets
// written to crds/.

export type SchemaType = "object" | "array" | "string" | "integer" | "number" | "boolean";

/** The subset of apiextensions.k8s.io/v1 JSONSchemaProps Walle's CRDs use. */
export interface StructuralSchema {
  description?: string;
  type?: SchemaType;
  format?: string;
  enum?: (string | number)[];
  default?: unknown;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  minItems?: number;
  maxItems?: number;
  properties?: Record<string, StructuralSchema>;
  required?: string[];
  additionalProperties?: StructuralSchema;
  items?: StructuralSchema;
  "x-kubernetes-validations"?: CelValidation[];
  "x-kubernetes-list-type"?: "atomic" | "set" | "map";
  "x-kubernetes-list-map-keys"?: string[];
  "x-kubernetes-map-type"?: "atomic" | "granular";
}

type JsonObject = Record<string, unknown>;

const INT32 = 2 ** 31;

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function fail(path: string, reason: string): never {
  throw new Error(`Cannot express ${path || "(root)"} in a CRD schema: ${reason}`);
}

function asNumber(value: unknown, path: string): number {
  return typeof value === "number" ? value : fail(path, `expected a number, got ${JSON.stringify(value)}`);
}

function asType(value: unknown, path: string): SchemaType {
  const types: readonly unknown[] = ["object", "array", "string", "integer", "number", "boolean"];
  return types.includes(value) ? (value as SchemaType) : fail(path, `unsupported type ${JSON.stringify(value)}`);
}

/**
 * zod bounds every integer by its representable range (int32, or ±2^53 for `z.int()`). The apiserver's int64
 * covers those without a bound, so the range becomes a `format` and only real bounds stay.
 */
function integerBounds(node: JsonObject, out: StructuralSchema, path: string): void {
  const min = node.minimum === undefined ? undefined : asNumber(node.minimum, path);
  const max = node.maximum === undefined ? undefined : asNumber(node.maximum, path);
  const int32 = max === INT32 - 1 || min === -INT32;
  out.format = int32 ? "int32" : "int64";
  if (min !== undefined && min !== -INT32 && min !== Number.MIN_SAFE_INTEGER) out.minimum = min;
  if (max !== undefined && max !== INT32 - 1 && max !== Number.MAX_SAFE_INTEGER) out.maximum = max;
}

/** JSON Schema's numeric exclusive bounds become OpenAPI 3.0's boolean flags. */
function numberBounds(node: JsonObject, out: StructuralSchema, path: string): void {
  if (node.minimum !== undefined) out.minimum = asNumber(node.minimum, path);
  if (node.maximum !== undefined) out.maximum = asNumber(node.maximum, path);
  if (node.exclusiveMinimum !== undefined) {
    out.minimum = asNumber(node.exclusiveMinimum, path);
    out.exclusiveMinimum = true;
  }
  if (node.exclusiveMaximum !== undefined) {
    out.maximum = asNumber(node.exclusiveMaximum, path);
    out.exclusiveMaximum = true;
  }
}

function stringFacets(node: JsonObject, out: StructuralSchema, path: string): void {
  if (typeof node.format === "string") out.format = node.format;
  // zod spells out date-time as a long regex too; the apiserver checks the format itself.
  if (typeof node.pattern === "string" && node.format !== "date-time") out.pattern = node.pattern;
  if (node.minLength !== undefined) out.minLength = asNumber(node.minLength, path);
  if (node.maxLength !== undefined) out.maxLength = asNumber(node.maxLength, path);
}

function objectFacets(node: JsonObject, out: StructuralSchema, path: string): void {
  if (isObject(node.properties)) {
    out.properties = Object.fromEntries(Object.entries(node.properties).map(([name, child]) => [name, toStructural(child, `${path}.${name}`)]));
  }
  if (Array.isArray(node.required) && node.required.length > 0) out.required = node.required.map(String);
  // A record (map) has typed values; `additionalProperties: false` is zod's strictness, which pruning gives us.
  if (isObject(node.additionalProperties) && Object.keys(node.additionalProperties).length > 0) {
    out.additionalProperties = toStructural(node.additionalProperties, `${path}[*]`);
  }
}

function arrayFacets(node: JsonObject, out: StructuralSchema, path: string): void {
  out.items = toStructural(node.items, `${path}[]`);
  if (node.minItems !== undefined) out.minItems = asNumber(node.minItems, path);
  if (node.maxItems !== undefined) out.maxItems = asNumber(node.maxItems, path);
}

const TYPE_FACETS: Record<SchemaType, (node: JsonObject, out: StructuralSchema, path: string) => void> = {
  object: objectFacets,
  array: arrayFacets,
  string: stringFacets,
  integer: integerBounds,
  number: numberBounds,
  boolean: () => {},
};

/** Keys handled above, or deliberately dropped (`$schema`, and `propertyNames`, which OpenAPI 3.0 lacks). */
const KNOWN_KEYS = new Set([
  "$schema",
  "type",
  "description",
  "default",
  "enum",
  "const",
  "format",
  "pattern",
  "minLength",
  "maxLength",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "properties",
  "required",
  "additionalProperties",
  "propertyNames",
  "items",
  "minItems",
  "maxItems",
  VALIDATIONS,
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-map-type",
]);

function kubernetesExtensions(node: JsonObject, out: StructuralSchema): void {
  if (Array.isArray(node[VALIDATIONS]) && node[VALIDATIONS].length > 0) {
    out[VALIDATIONS] = node[VALIDATIONS] as CelValidation[];
  }
  const listType = node["x-kubernetes-list-type"];
  if (listType === "atomic" || listType === "set" || listType === "map") out["x-kubernetes-list-type"] = listType;
  const mapKeys = node["x-kubernetes-list-map-keys"];
  if (Array.isArray(mapKeys)) out["x-kubernetes-list-map-keys"] = mapKeys.map(String);
  const mapType = node["x-kubernetes-map-type"];
  if (mapType === "atomic" || mapType === "granular") out["x-kubernetes-map-type"] = mapType;
}

function enumValues(node: JsonObject, path: string): (string | number)[] | undefined {
  const values = node.enum ?? (node.const === undefined ? undefined : [node.const]);
  if (values === undefined) return undefined;
  if (!Array.isArray(values) || !values.every((v) => typeof v === "string" || typeof v === "number")) {
    return fail(path, "enum values must be strings or numbers");
  }
  return values;
}

/** Converts one node of zod's JSON Schema, and its children. `path` names the node in error messages. */
export function toStructural(node: unknown, path = ""): StructuralSchema {
  if (!isObject(node)) return fail(path, "expected a schema object");
  const unknown = Object.keys(node).filter((key) => !KNOWN_KEYS.has(key));
  if (unknown.length > 0) fail(path, `unsupported keywords ${unknown.join(", ")}`);

  const type = asType(node.type, path);
  const out: StructuralSchema = {};
  if (typeof node.description === "string") out.description = node.description;
  out.type = type;
  TYPE_FACETS[type](node, out, path);
  const values = enumValues(node, path);
  if (values !== undefined) out.enum = values;
  if (node.default !== undefined) out.default = node.default;
  kubernetesExtensions(node, out);
  return out;
}

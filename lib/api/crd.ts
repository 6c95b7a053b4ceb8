import { z } from "zod";
import { CATEGORY, GROUP, VERSION } from "./constants.ts";
import type { KindDefinition, PrinterColumn } from "./kind.ts";
import { toStructural } from "./structural.ts";
import type { StructuralSchema } from "./structural.ts";

// Turns each kind's zod schemas into an apiextensions.k8s.io/v1 CustomResourceDefinition.

export interface CustomResourceDefinition {
  apiVersion: "apiextensions.k8s.io/v1";
  kind: "CustomResourceDefinition";
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    names: {
      kind: string;
      listKind: string;
      plural: string;
      singular: string;
      shortNames: string[];
      categories: string[];
    };
    scope: "Namespaced" | "Cluster";
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      schema: { openAPIV3Schema: StructuralSchema };
      subresources: { status: Record<string, never> };
      additionalPrinterColumns: PrinterColumn[];
    }[];
  };
}

/** Labels on everything crdgen writes, so an install can be listed and removed as one. */
export const MANIFEST_LABELS = {
  "app.kubernetes.io/name": "walle",
  "app.kubernetes.io/part-of": "walle",
} as const;

function structuralOf(schema: z.ZodType, what: string): StructuralSchema {
  // `io: "input"` describes what a client may send: fields with defaults are optional and carry the default,
  // which the apiserver then applies, just as the parse helpers do.
  return toStructural(z.toJSONSchema(schema, { io: "input", unrepresentable: "throw" }), what);
}

/** The object schema: the standard envelope around the kind's spec and status. */
export function openApiSchema(def: KindDefinition): StructuralSchema {
  return {
    description: def.description,
    type: "object",
    properties: {
      apiVersion: { description: "The versioned schema of this object: ros.io/v1.", type: "string" },
      kind: { description: `The kind of this object: ${def.kind}.`, type: "string" },
      metadata: { type: "object" },
      spec: { description: "What the object asks for.", ...structuralOf(def.spec, `${def.kind}.spec`) },
      status: { description: "What Walle observed; Walle writes it.", ...structuralOf(def.status, `${def.kind}.status`) },
    },
    required: ["spec"],
  };
}

export function customResourceDefinition(def: KindDefinition): CustomResourceDefinition {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${def.plural}.${GROUP}`, labels: { ...MANIFEST_LABELS } },
    spec: {
      group: GROUP,
      names: {
        kind: def.kind,
        listKind: `${def.kind}List`,
        plural: def.plural,
        singular: def.singular,
        shortNames: [...def.shortNames],
        categories: [CATEGORY],
      },
      scope: def.scope,
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: openApiSchema(def) },
          subresources: { status: {} },
          additionalPrinterColumns: [...def.printerColumns],
        },
      ],
    },
  };
}

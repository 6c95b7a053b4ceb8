import type { z } from "zod";

/** An additionalPrinterColumns entry of a CRD version. */
export interface PrinterColumn {
  readonly name: string;
  readonly type: "string" | "integer" | "number" | "boolean" | "date";
  readonly jsonPath: string;
  readonly description: string;
  /** 0 shows the column in `kubectl get`; 1 only in `kubectl get -o wide`. */
  readonly priority?: 0 | 1;
  readonly format?: string;
}

/** Everything the CRD generator needs to know about one kind, next to the kind's schemas. */
export interface KindDefinition {
  readonly kind: string;
  readonly plural: string;
  readonly singular: string;
  readonly shortNames: readonly string[];
  readonly scope: "Namespaced" | "Cluster";
  readonly description: string;
  readonly spec: z.ZodType;
  readonly status: z.ZodType;
  readonly printerColumns: readonly PrinterColumn[];
}

/** Progress of the worker, for the kinds that run one. */
export const progressColumn: PrinterColumn = {
  name: "Progress",
  type: "number",
  jsonPath: ".status.progress.percent",
  description: "Percent done.",
};

/** The repository Secret, in `kubectl get -o wide`. */
export const repositoryColumn: PrinterColumn = {
  name: "Repository",
  type: "string",
  jsonPath: ".spec.repository.name",
  description: "The repository Secret.",
  priority: 1,
};

/** The Age column every kind ends with, as kubectl shows it for built-in kinds. */
export const ageColumn: PrinterColumn = {
  name: "Age",
  type: "date",
  jsonPath: ".metadata.creationTimestamp",
  description: "Time since the object was created.",
};

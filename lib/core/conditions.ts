// metav1.Condition helpers: set a condition, keeping lastTransitionTime when the status did not change.
import type { Condition } from "../api/common.ts";
import { ConditionStatus } from "../api/constants.ts";

export interface ConditionInput {
  readonly type: string;
  readonly status: ConditionStatus;
  readonly reason: string;
  readonly message: string;
}

export function setCondition(conditions: readonly Condition[] | undefined, input: ConditionInput, now: Date, generation?: number): Condition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === input.type);
  const old = i >= 0 ? list[i] : undefined;
  const next: Condition = {
    ...input,
    lastTransitionTime: old && old.status === input.status ? old.lastTransitionTime : now.toISOString().replace(/\.\d+Z$/, "Z"),
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
  };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === ConditionStatus.True;
}

export const rfc3339 = (d: Date): string => d.toISOString().replace(/\.\d+Z$/, "Z");

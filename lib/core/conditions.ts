// metav1.Condition helpers: set a condition (keeping lastTransitionTime when the status did not change), find
// one, and the predicates the decisions and the routing ask of them. Types and reasons come from the tables in
// lib/api/conditions.ts, so no free string ever becomes a condition.
import type { Condition } from "../api/common.ts";
import { ConditionType, type ConditionReason } from "../api/conditions.ts";
import { ConditionStatus } from "../api/constants.ts";

export interface ConditionInput {
  readonly type: ConditionType;
  readonly status: ConditionStatus;
  readonly reason: ConditionReason;
  readonly message: string;
}

/** A condition as read back: from Walle or from an older writer, so its fields are plain strings. */
type ReadCondition = { readonly type: string; readonly status: string };

export const rfc3339 = (d: Date): string => d.toISOString().replace(/\.\d+Z$/, "Z");

export function setCondition(conditions: readonly Condition[] | undefined, input: ConditionInput, now: Date, generation?: number): Condition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === input.type);
  const old = i >= 0 ? list[i] : undefined;
  const next: Condition = {
    ...input,
    lastTransitionTime: old && old.status === input.status ? old.lastTransitionTime : rfc3339(now),
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
  };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

export function findCondition<C extends ReadCondition>(conditions: readonly C[] | undefined, type: ConditionType): C | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isTrue(conditions: readonly ReadCondition[] | undefined, type: ConditionType): boolean {
  return findCondition(conditions, type)?.status === ConditionStatus.True;
}

/** The run's temporary objects are deleted: nothing of it is left but its status. */
export const isCleanedUp = (conditions: readonly ReadCondition[] | undefined): boolean => isTrue(conditions, ConditionType.CleanedUp);

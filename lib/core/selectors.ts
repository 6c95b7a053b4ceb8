// Label selectors as the API's labelSelector query parameter spells them.
import type { LabelSelector } from "../api/common.ts";

/** A LabelSelector in the API's query syntax, as metav1.LabelSelectorAsSelector writes it; empty selects all. */
export function selectorString(selector: LabelSelector | undefined): string {
  const parts = Object.entries(selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of selector?.matchExpressions ?? []) {
    const values = `(${(e.values ?? []).join(",")})`;
    switch (e.operator) {
      case "In":
        parts.push(`${e.key} in ${values}`);
        break;
      case "NotIn":
        parts.push(`${e.key} notin ${values}`);
        break;
      case "Exists":
        parts.push(e.key);
        break;
      case "DoesNotExist":
        parts.push(`!${e.key}`);
        break;
      default: {
        const never: never = e.operator;
        throw new Error(`unknown label selector operator ${String(never)}`);
      }
    }
  }
  return parts.join(",");
}

// Asking the API server who a caller is and what it may do: a TokenReview (authentication.k8s.io/v1) checks a bearer
// token as the API server itself would, for the audiences the function accepts; a SubjectAccessReview
// (authorization.k8s.io/v1) asks its authorizers (RBAC) whether that user may do one thing. Neither caches: a
// trigger is rare, and a revoked token or binding must stop working at once.
import { z } from "zod";
import type { Access } from "../core/access.ts";
import type { RestClient } from "./rest.ts";

/** Who a token belongs to, as the API server authenticated it. */
export interface Caller {
  readonly username: string;
  readonly uid?: string;
  readonly groups: readonly string[];
  readonly extra: Readonly<Record<string, readonly string[]>>;
  /** The audiences the token was valid for (the intersection with those asked). */
  readonly audiences: readonly string[];
}

const tokenReviewSchema = z.looseObject({
  status: z
    .looseObject({
      authenticated: z.boolean().optional(),
      error: z.string().optional(),
      audiences: z.array(z.string()).optional(),
      user: z
        .looseObject({
          username: z.string().optional(),
          uid: z.string().optional(),
          groups: z.array(z.string()).optional(),
          extra: z.record(z.string(), z.array(z.string())).optional(),
        })
        .optional(),
    })
    .optional(),
});

/**
 * The caller a token authenticates, or the API server's reason it does not. `audiences` empty asks for the API
 * server's own audiences (a token that could call the API server itself).
 */
export async function reviewToken(api: RestClient, token: string, audiences: readonly string[]): Promise<Caller | { refused: string }> {
  const review = tokenReviewSchema.parse(
    await api.create("/apis/authentication.k8s.io/v1/tokenreviews", {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenReview",
      spec: { token, ...(audiences.length ? { audiences } : {}) },
    }),
  );
  const status = review.status;
  if (!status?.authenticated || !status.user?.username) return { refused: status?.error || "the token is not valid" };
  return {
    username: status.user.username,
    ...(status.user.uid ? { uid: status.user.uid } : {}),
    groups: status.user.groups ?? [],
    extra: status.user.extra ?? {},
    audiences: status.audiences ?? [],
  };
}

const accessReviewSchema = z.looseObject({
  status: z
    .looseObject({ allowed: z.boolean().optional(), denied: z.boolean().optional(), reason: z.string().optional(), evaluationError: z.string().optional() })
    .optional(),
});

/** Whether the caller may do `access`, with the authorizer's reason when it says why. */
export async function reviewAccess(api: RestClient, caller: Caller, access: Access): Promise<{ allowed: boolean; reason?: string }> {
  const review = accessReviewSchema.parse(
    await api.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SubjectAccessReview",
      spec: {
        user: caller.username,
        ...(caller.uid ? { uid: caller.uid } : {}),
        groups: caller.groups,
        extra: caller.extra,
        resourceAttributes: access,
      },
    }),
  );
  const reason = review.status?.reason || review.status?.evaluationError;
  return { allowed: review.status?.allowed === true, ...(reason ? { reason } : {}) };
}

// Who may trigger what (docs/architecture.md, Security), for every function: a forced backup, restore, resync or tick is accepted only
// from a caller Kubernetes authenticates (a TokenReview of its bearer token, for Walle's audience or the API
// server's own) and its RBAC authorizes for everything the request would do (one SubjectAccessReview per
// permission, lib/core/access.ts). The static trigger token, when configured, stands for an admin: it is the
// opt-in for callers outside the cluster. Nothing is accepted unauthenticated.
import { describeAccess, type Access } from "../core/access.ts";
import { reviewAccess, reviewToken, type Caller } from "../k8s/reviews.ts";
import type { RestClient } from "../k8s/rest.ts";
import { ForbiddenError, UnauthenticatedError, type Credentials } from "./events.ts";

/** Who was let through: a user Kubernetes knows, or the holder of the static trigger token. */
export type Authorized = { readonly staticToken: true } | { readonly staticToken: false; readonly caller: Caller };

/** How a caller gets a token the function accepts, for every 401. */
const howTo = (audience: string) => `send Authorization: Bearer <token>, for example $(kubectl create token <service-account> --audience ${audience})`;

/** The caller a request's bearer token authenticates, for Walle's audience or else the API server's. */
export async function authenticate(api: RestClient, credentials: Credentials, audience: string, what: string): Promise<Authorized> {
  if (credentials.staticToken) return { staticToken: true };
  if (!credentials.bearer) throw new UnauthenticatedError(`A ${what} needs a Kubernetes bearer token: ${howTo(audience)}`);
  const ours = await reviewToken(api, credentials.bearer, [audience]);
  if (!("refused" in ours)) return { staticToken: false, caller: ours };
  const apiServers = await reviewToken(api, credentials.bearer, []);
  if (!("refused" in apiServers)) return { staticToken: false, caller: apiServers };
  throw new UnauthenticatedError(
    `The bearer token of this ${what} was not accepted for audience ${audience} or the API server's: ${ours.refused}; ${howTo(audience)}`,
  );
}

/**
 * Checks that RBAC allows an authenticated caller every one of `needs`; throws 403. A trigger is authenticated
 * before its data is even parsed (so an unknown caller learns nothing of what a request may hold), and authorized
 * once the data says what it would do.
 */
export async function authorize(api: RestClient, who: Authorized, what: string, needs: readonly Access[]): Promise<Authorized> {
  if (who.staticToken) return who;
  const denied: string[] = [];
  for (const access of needs) {
    const review = await reviewAccess(api, who.caller, access);
    if (!review.allowed) denied.push(describeAccess(access));
  }
  if (denied.length > 0) {
    throw new ForbiddenError(`${who.caller.username} may not make this ${what}: RBAC does not allow it to ${denied.join(", nor ")}`);
  }
  return who;
}

// The tick of knative/ping is fired by a Knative PingSource, and a ping is a trigger like any other
// (docs/architecture.md, Triggers): accepted only with a token Kubernetes authenticates. A PingSource sends one only
// when Knative Eventing's sender identity is on (`authentication-oidc: enabled` in its config-features ConfigMap).
// Without it every ping would be refused (401) and no schedule would ever run, so the tick checks when it starts
// and refuses to start, saying why in a Warning Event about its PingSource, as soon as it is installed.
import { z } from "zod";
import { EventReason } from "../api/conditions.ts";
import { read, recordEvent } from "../k8s/actions.ts";
import type { RestClient } from "../k8s/rest.ts";

/** Where Knative Eventing keeps its feature flags (its system namespace, as installed by its release). */
export const EVENTING_FEATURES = { namespace: "knative-eventing", name: "config-features", flag: "authentication-oidc" } as const;

const featuresSchema = z.object({ data: z.record(z.string(), z.string()).optional() });

/** Why pings would be refused, or undefined when Knative Eventing sends the PingSource's identity with each. */
export async function senderIdentityMissing(api: RestClient): Promise<string | undefined> {
  const { namespace, name, flag } = EVENTING_FEATURES;
  const features = await read(api, featuresSchema, `/api/v1/namespaces/${namespace}/configmaps/${name}`);
  const value = features?.data?.[flag];
  if (value === "enabled") return undefined;
  const found = features === null ? `there is no ConfigMap ${namespace}/${name}` : `${flag} is ${value ?? "not set"} in ConfigMap ${namespace}/${name}`;
  return (
    `The tick is fired by a PingSource, whose pings carry a token only with Knative Eventing's sender identity, and ${found}: ` +
    `every ping would be refused (401). Set ${flag}: enabled there and start the tick again, or tick with KEDA (keda/) instead of knative/ping.`
  );
}

/**
 * Throws, saying why, when the PingSource `pingSource` of `namespace` sends pings the tick would refuse; the reason
 * is recorded first as a Warning Event about that PingSource, where `kubectl events` shows it.
 */
export async function requireSenderIdentity(
  api: RestClient,
  pingSource: { readonly namespace: string; readonly name: string },
  controller: { readonly name: string; readonly instance: string },
  now: Date,
): Promise<void> {
  const missing = await senderIdentityMissing(api);
  if (!missing) return;
  const regarding = { apiVersion: "sources.knative.dev/v1", kind: "PingSource", ...pingSource };
  await recordEvent(api, regarding, { type: "Warning", reason: EventReason.SenderIdentityOff, note: missing }, controller, now);
  throw new Error(missing);
}

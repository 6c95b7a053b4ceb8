// A pod that runs a shell script once on a cluster's real node, for what only a pod can do: ask a Service by its
// cluster.local name, through kube-proxy and the cluster's DNS.
import type { RestClient } from "../../lib/k8s/rest.ts";
import { waitFor } from "./kube.ts";

interface PodSeen {
  status?: { phase?: string; containerStatuses?: { state?: { terminated?: { message?: string } } }[] };
}

/** Runs `script` in busybox (the local registry's stand-in) with `env`; how it ended and its termination message. */
export async function runOnce(
  api: RestClient,
  ns: string,
  name: string,
  script: string,
  env: Record<string, string> = {},
  timeoutMs = 120_000,
): Promise<{ phase?: string; message?: string }> {
  await api.create(`/api/v1/namespaces/${ns}/pods`, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name },
    spec: {
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      containers: [
        {
          name: "client",
          image: "docker.io/library/busybox:1.36",
          command: ["/bin/sh", "-c", script],
          env: Object.entries(env).map(([k, v]) => ({ name: k, value: v })),
        },
      ],
    },
  });
  const pod = await waitFor(
    async () => {
      const p = await api.get<PodSeen>(`/api/v1/namespaces/${ns}/pods/${name}`);
      return p.status?.phase === "Succeeded" || p.status?.phase === "Failed" ? p : undefined;
    },
    `pod ${ns}/${name} to end`,
    timeoutMs,
  );
  return { phase: pod.status?.phase, message: pod.status?.containerStatuses?.[0]?.state?.terminated?.message };
}

// The local cluster's implementation of Knative's ingress (KIngress, networking.internal.knative.dev/v1alpha1), as
// Kourier, Contour or Istio implement it on a real cluster: Knative's ingress is a plug-in interface, and none of
// those plug-ins can be had here (their modules are not served, and Debian has no Envoy). It lives in cluster/, never
// in the product. Its data plane is an HTTP/1.1 proxy of its own, on the host end of the node's link (where pods
// reach the host), with two listeners: the private one serves every rule, the public one only ExternalIP rules.
// Services `kingress-private` and `kingress-public` in knative-serving lead there (their EndpointSlices name the
// listeners), and an Ingress's status names them as its load balancers, so Serving points a Route's placeholder
// Service at `kingress-private.knative-serving.svc.cluster.local`.
//
// What it implements: host and path-prefix rules, header matches, percent splits, appended headers (the path's and
// the split's, where Knative's activator learns the revision), host rewrites, WebSocket upgrades, response trailers,
// and cancellation (a client gone cancels the backend's request); it never retries and sets no timeout. Backends
// are reached at the ready endpoints of their Service's port, as kube-proxy would route them. Ready on an Ingress
// means the proxy serves its rules, which it does from the moment it reads them. Not implemented, and refused by nobody yet: TLS (spec.tls), HTTP/2 and gRPC to the backends, the Redirected
// httpOption. Knative's own ingress conformance tests do not run against it yet.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Informer, type KubeObject } from "../lib/k8s/informer.ts";
import type { RestClient } from "../lib/k8s/rest.ts";
import { applyObjects } from "./manifests.ts";

/** The ingress class Serving is configured with (config-network `ingress-class`). */
export const INGRESS_CLASS = "walle.ingress.networking.knative.dev";
const CLASS_ANNOTATION = "networking.knative.dev/ingress.class";
const NAMESPACE = "knative-serving";

interface Backend {
  serviceNamespace: string;
  serviceName: string;
  servicePort: number | string;
}
interface Split extends Backend {
  percent?: number;
  appendHeaders?: Record<string, string>;
}
interface HttpPath {
  path?: string;
  rewriteHost?: string;
  headers?: Record<string, { exact: string }>;
  splits: Split[];
  appendHeaders?: Record<string, string>;
}
interface Rule {
  hosts?: string[];
  visibility?: "ExternalIP" | "ClusterLocal";
  http?: { paths: HttpPath[] };
}
type Ingress = KubeObject & { metadata: { generation?: number; annotations?: Record<string, string> }; spec?: { rules?: Rule[] } };
type Service = KubeObject & { spec?: { ports?: { name?: string; port: number; targetPort?: number | string }[] } };
type Slice = KubeObject & {
  metadata: { labels?: Record<string, string> };
  endpoints?: { addresses: string[]; conditions?: { ready?: boolean } }[];
  ports?: { name?: string; port?: number }[];
};

export interface LocalIngress {
  stop(): Promise<void>;
}

const hostOf = (header: string | undefined) => (header ?? "").replace(/:\d+$/, "").toLowerCase();

/** The path of `rules` that takes a request: its host's rules, the longest path prefix whose headers match. */
export function route(
  rules: readonly Rule[],
  host: string,
  path: string,
  headers: http.IncomingHttpHeaders,
  visible: (r: Rule) => boolean,
): HttpPath | undefined {
  const candidates = rules.filter((r) => visible(r) && (r.hosts ?? []).some((h) => h.toLowerCase() === host)).flatMap((r) => r.http?.paths ?? []);
  const matching = candidates.filter(
    (p) => path.startsWith(p.path ?? "/") && Object.entries(p.headers ?? {}).every(([name, m]) => headers[name.toLowerCase()] === m.exact),
  );
  return matching.sort(
    (a, b) => (b.path ?? "/").length - (a.path ?? "/").length || Object.keys(b.headers ?? {}).length - Object.keys(a.headers ?? {}).length,
  )[0];
}

/** One split by its percent, as a weighted draw (`draw` in [0, 100)). */
export function pick(splits: readonly Split[], draw: number): Split | undefined {
  let sum = 0;
  for (const s of splits) {
    sum += s.percent ?? (splits.length === 1 ? 100 : 0);
    if (draw < sum) return s;
  }
  return undefined;
}

/** Starts the controller and its two listeners on `host` (the node link's host end). */
export async function startLocalIngress(o: { readonly api: RestClient; readonly host: string; readonly log?: (line: string) => void }): Promise<LocalIngress> {
  const log = o.log ?? (() => {});
  const services = new Informer<Service>(o.api, "/api/v1/services", () => {});
  const slices = new Informer<Slice>(o.api, "/apis/discovery.k8s.io/v1/endpointslices", () => {});
  await Promise.all([services.start(), slices.start()]);
  const ours = (i: Ingress) => i.metadata.annotations?.[CLASS_ANNOTATION] === INGRESS_CLASS;
  const ingresses = new Informer<Ingress>(o.api, "/apis/networking.internal.knative.dev/v1alpha1/ingresses", (type, ing) => {
    if (type !== "delete" && ours(ing)) void markReady(ing);
  });

  /** The address and port of a ready endpoint of a backend's Service port. */
  function endpoint(b: Backend): { ip: string; port: number } | undefined {
    const svc = services.get(b.serviceNamespace, b.serviceName);
    const port = svc?.spec?.ports?.find((p) => p.port === b.servicePort || p.name === b.servicePort);
    if (!port) return undefined;
    for (const s of slices.list()) {
      if (s.metadata.namespace !== b.serviceNamespace || s.metadata.labels?.["kubernetes.io/service-name"] !== b.serviceName) continue;
      const target = s.ports?.find((p) => (p.name ?? "") === (port.name ?? "")) ?? (s.ports?.length === 1 ? s.ports[0] : undefined);
      const ready = (s.endpoints ?? []).filter((e) => e.conditions?.ready !== false).flatMap((e) => e.addresses);
      if (target?.port && ready.length > 0) return { ip: ready[Math.floor(Math.random() * ready.length)] ?? "", port: target.port };
    }
    return undefined;
  }

  function serve(visible: (r: Rule) => boolean) {
    const choose = (req: http.IncomingMessage) => {
      const rules = ingresses
        .list()
        .filter(ours)
        .flatMap((i) => i.spec?.rules ?? []);
      const path = route(rules, hostOf(req.headers.host), new URL(req.url ?? "/", "http://x").pathname, req.headers, visible);
      const split = path && pick(path.splits, Math.random() * 100);
      const to = split && endpoint(split);
      if (!path || !split || !to) return undefined;
      const headers = { ...req.headers, ...path.appendHeaders, ...split.appendHeaders, ...(path.rewriteHost ? { host: path.rewriteHost } : {}) };
      return { to, headers };
    };
    const server = http.createServer((req, res) => {
      const c = choose(req);
      if (!c) {
        res.writeHead(404).end();
        return;
      }
      const upstream = http.request({ host: c.to.ip, port: c.to.port, method: req.method, path: req.url, headers: c.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.rawHeaders);
        // Trailers too (a pipe leaves them out): a backend may end its response with them, as Walle's stream does.
        up.pipe(res, { end: false });
        up.once("end", () => {
          const trailers: [string, string][] = [];
          for (let i = 0; i + 1 < up.rawTrailers.length; i += 2) trailers.push([up.rawTrailers[i] ?? "", up.rawTrailers[i + 1] ?? ""]);
          if (trailers.length > 0) res.addTrailers(trailers);
          res.end();
        });
        up.once("aborted", () => res.destroy());
      });
      upstream.on("error", () => (res.headersSent ? res.destroy() : res.writeHead(503).end()));
      // A client gone before the response's end is a request cancelled: the backend's is too, as Envoy resets it.
      res.once("close", () => {
        if (!res.writableFinished) upstream.destroy();
      });
      req.pipe(upstream);
    });
    server.on("upgrade", (req, socket, head) => {
      const c = choose(req);
      if (!c) return socket.end("HTTP/1.1 404 Not Found\r\n\r\n");
      const upstream = http.request({ host: c.to.ip, port: c.to.port, method: req.method, path: req.url, headers: c.headers });
      upstream.on("upgrade", (up, upSocket, upHead) => {
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\n${Object.entries(up.headers)
            .map(([k, v]) => `${k}: ${String(v)}`)
            .join("\r\n")}\r\n\r\n`,
        );
        if (upHead.length) socket.write(upHead);
        if (head.length) upSocket.write(head);
        upSocket.pipe(socket).pipe(upSocket);
      });
      upstream.on("error", () => socket.destroy());
      upstream.end();
    });
    // Knative's ingresses have no timeouts: a request lasts as long as its backend takes.
    server.requestTimeout = 0;
    server.headersTimeout = 60_000;
    return server;
  }

  const servers = { private: serve(() => true), public: serve((r) => (r.visibility ?? "ExternalIP") === "ExternalIP") };
  const ports: Record<string, number> = {};
  for (const [name, server] of Object.entries(servers)) {
    await new Promise<void>((resolve) => server.listen(0, o.host, resolve));
    ports[name] = (server.address() as AddressInfo).port;
    await loadBalancer(`kingress-${name}`, ports[name] ?? 0);
  }

  /** A Service of the install's namespace whose EndpointSlice is a listener: what the Route's placeholder names. */
  async function loadBalancer(name: string, port: number): Promise<void> {
    const labels = { "app.kubernetes.io/part-of": "walle-local-cluster" };
    const service = {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, namespace: NAMESPACE, labels },
      spec: { ports: [{ name: "http", port: 80, targetPort: port }] },
    };
    const slice = {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: {
        name,
        namespace: NAMESPACE,
        labels: { ...labels, "kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "walle-local" },
      },
      addressType: "IPv4",
      endpoints: [{ addresses: [o.host], conditions: { ready: true } }],
      ports: [{ name: "http", port, protocol: "TCP" }],
    };
    await applyObjects(o.api, [service, slice]);
  }

  async function markReady(ing: Ingress): Promise<void> {
    const st = (ing as { status?: { observedGeneration?: number; conditions?: { type: string; status: string }[] } }).status;
    if (st?.observedGeneration === ing.metadata.generation && st?.conditions?.some((c) => c.type === "Ready" && c.status === "True")) return;
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const ready = (type: string) => ({ type, status: "True", lastTransitionTime: now });
    const lb = (name: string) => ({ ingress: [{ domainInternal: `${name}.${NAMESPACE}.svc.cluster.local` }] });
    await o.api
      .patch(`/apis/networking.internal.knative.dev/v1alpha1/namespaces/${ing.metadata.namespace}/ingresses/${ing.metadata.name}/status`, {
        status: {
          observedGeneration: ing.metadata.generation,
          conditions: [ready("LoadBalancerReady"), ready("NetworkConfigured"), ready("Ready")],
          privateLoadBalancer: lb("kingress-private"),
          publicLoadBalancer: lb("kingress-public"),
        },
      })
      .catch((err: unknown) => log(`KIngress ${ing.metadata.namespace}/${ing.metadata.name}: its status could not be written: ${String(err)}`));
  }

  await ingresses.start();
  log(`The local KIngress serves on ${o.host}:${ports.private} (private) and ${o.host}:${ports.public} (public).`);
  return {
    async stop() {
      ingresses.stop();
      services.stop();
      slices.stop();
      await Promise.all(Object.values(servers).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}

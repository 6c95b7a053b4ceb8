// The local cluster's KIngress (cluster/kingress.ts) as pure choices: which path of an Ingress's rules takes a
// request (host, visibility, the longest path prefix, header matches), and which split a draw picks by percent.
import { describe, expect, it } from "vitest";
import { pick, route } from "../../cluster/kingress.ts";

const backend = (name: string, percent?: number) => ({
  serviceNamespace: "ns",
  serviceName: name,
  servicePort: 80,
  ...(percent !== undefined ? { percent } : {}),
});
const rules = [
  {
    hosts: ["hello.ns", "hello.ns.svc.cluster.local"],
    visibility: "ClusterLocal" as const,
    http: {
      paths: [
        { splits: [backend("root")] },
        { path: "/api", splits: [backend("api")] },
        { path: "/api", headers: { "x-tag": { exact: "beta" } }, splits: [backend("beta")] },
      ],
    },
  },
  { hosts: ["hello.example.com"], visibility: "ExternalIP" as const, http: { paths: [{ splits: [backend("public")] }] } },
];
const everyRule = () => true;
const publicOnly = (r: { visibility?: string }) => (r.visibility ?? "ExternalIP") === "ExternalIP";

describe("route", () => {
  it.each([
    ["the host's only path", "hello.ns", "/", {}, everyRule, "root"],
    ["the longest path prefix", "hello.ns.svc.cluster.local", "/api/v1", {}, everyRule, "api"],
    ["the path whose headers match, before one that asks none", "hello.ns", "/api", { "x-tag": "beta" }, everyRule, "beta"],
    ["a header that does not match leaves the plain path", "hello.ns", "/api", { "x-tag": "alpha" }, everyRule, "api"],
    ["an external host on the public listener", "hello.example.com", "/", {}, publicOnly, "public"],
    ["no cluster-local host on the public listener", "hello.ns", "/", {}, publicOnly, undefined],
    ["no unknown host", "other.ns", "/", {}, everyRule, undefined],
  ])("%s", (_, host, path, headers, visible, want) => {
    expect(route(rules, host, path, headers, visible)?.splits[0]?.serviceName).toBe(want);
  });
});

describe("pick", () => {
  it.each([
    [0, "a"],
    [19.9, "a"],
    [20, "b"],
    [99.9, "b"],
  ])("a draw of %d picks %s of a 20/80 split", (draw, want) => {
    expect(pick([backend("a", 20), backend("b", 80)], draw)?.serviceName).toBe(want);
  });
  it("takes a lone split without a percent, and nothing from a 0% split", () => {
    expect(pick([backend("only")], 50)?.serviceName).toBe("only");
    expect(pick([backend("none", 0), backend("all", 100)], 0)?.serviceName).toBe("all");
  });
});

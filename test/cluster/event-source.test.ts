// Knative's own ApiServerSource adapter, as the local cluster runs it from the real manifest and as the manifest's
// service account: what it sends (docs/architecture.md, Events) for the resources knative/apiserversource.yaml names, and nothing else.
import type { CloudEventV1 } from "cloudevents";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import http, { type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, inject, it } from "vitest";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { defaultManifest, startEventSource, type EventSource, type EventSourceOptions } from "../../cluster/event-source.ts";
import type { KubeObject } from "../../lib/k8s/informer.ts";
import { createReceiver } from "../../lib/app/receiver.ts";
import { createLogger } from "../../lib/log.ts";
import { admin, createNamespace, grantRole, waitFor } from "../support/kube.ts";

// ---- A sink that records what it receives

interface Received {
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

type Responder = (r: Received) => number;

interface Receiver {
  readonly url: string;
  readonly requests: Received[];
  close(): Promise<void>;
}

async function startReceiver(respond: Responder = () => 200): Promise<Receiver> {
  const requests: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const received = { headers: req.headers, body: Buffer.concat(chunks).toString("utf8") };
      requests.push(received);
      res.statusCode = respond(received);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// ---- Fixtures

const CREATED_BY = { "app.kubernetes.io/created-by": "walle" };
const pvcs = (ns: string) => `/api/v1/namespaces/${ns}/persistentvolumeclaims`;
const jobs = (ns: string) => `/apis/batch/v1/namespaces/${ns}/jobs`;

/**
 * A PVC that nothing else writes to: with the empty storage class and no PVs it stays Pending, untouched by
 * the binder, so every event it causes is one the test made.
 */
function pvc(name: string, labels: Record<string, string> = {}, extra: Partial<KubeObject["metadata"]> = {}) {
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name, labels, ...extra },
    spec: { accessModes: ["ReadWriteOnce"], storageClassName: "", resources: { requests: { storage: "1Gi" } } },
  };
}

/** A suspended Job: the job controller starts no pods for it. */
function job(name: string, labels: Record<string, string> = {}) {
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name, labels },
    spec: {
      suspend: true,
      template: { spec: { restartPolicy: "Never", containers: [{ name: "main", image: "busybox", command: ["true"] }] } },
    },
  };
}

const eventsFor = (r: Receiver, ns: string, name: string) => r.requests.filter((q) => q.headers["ce-namespace"] === ns && q.headers["ce-name"] === name);
const typesOf = (events: Received[]) => events.map((e) => String(e.headers["ce-type"]).split(".").pop());
const bodyOf = (e: Received | undefined) => JSON.parse(e?.body ?? "null") as KubeObject & { metadata: { annotations?: Record<string, string> } };

async function waitForTypes(r: Receiver, ns: string, name: string, last: string, what: string): Promise<Received[]> {
  return waitFor(
    async () => {
      const events = eventsFor(r, ns, name);
      return typesOf(events).at(-1) === last ? events : undefined;
    },
    what,
    30_000,
  );
}

/** Waits long enough for a stray event to have arrived, had one been sent. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 1500));

let stopAfter: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stopAfter.reverse()) await stop();
  stopAfter = [];
});

/** 1 attempt and 5 retries: sdk-go's retry with the backoff the adapter asks for (pkg/adapter/apiserver/events.go). */
const ADAPTER_ATTEMPTS = 6;

async function start(opts: Omit<EventSourceOptions, "api" | "sink" | "stateDir">, respond?: Responder): Promise<{ source: EventSource; receiver: Receiver }> {
  const receiver = await startReceiver(respond);
  stopAfter.push(() => receiver.close());
  const source = await startEventSource({ api: admin(), stateDir: inject("clusterStateDir"), sink: receiver.url, ...opts });
  stopAfter.push(() => source.stop());
  return { source, receiver };
}

/** A manifest beside the real one, changed by `edit`. */
async function manifestWith(edit: (m: Record<string, unknown> & { spec: Record<string, unknown> }) => void): Promise<string> {
  const manifest = parseYaml(await readFile(defaultManifest, "utf8")) as Record<string, unknown> & { spec: Record<string, unknown> };
  edit(manifest);
  const file = path.join(await mkdtemp(path.join(os.tmpdir(), "walle-event-source-")), "apiserversource.yaml");
  await writeFile(file, stringifyYaml(manifest));
  return file;
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// ---- Tests

describe("the ApiServerSource manifest", () => {
  it("is a valid sources.knative.dev/v1 ApiServerSource", async () => {
    const manifest = parseYaml(await readFile(defaultManifest, "utf8")) as KubeObject;
    const created = await admin().create<KubeObject & { spec: { mode: string } }>(
      "/apis/sources.knative.dev/v1/namespaces/walle-system/apiserversources",
      manifest,
      { dryRun: "All", fieldValidation: "Strict" },
    );
    expect(created.metadata.name).toBe("walle-reconcile");
    expect(created.spec.mode).toBe("Resource");
  });
});

describe("Knative's ApiServerSource adapter on the local cluster", () => {
  it("sends binary-mode Resource events for the labelled children made after it started, and nothing else", async () => {
    const ns = await createNamespace("evsrc");
    await admin().create(pvcs(ns), pvc("before", CREATED_BY));

    const { source, receiver } = await start({});
    // The adapter names its reflectors by GroupVersionResource.String(); every namespace, so one each.
    expect(source.watching).toContain("/v1, Resource=persistentvolumeclaims");
    expect(source.watching).toContain("batch/v1, Resource=jobs");

    await admin().create(pvcs(ns), pvc("labelled", CREATED_BY));
    await admin().create(pvcs(ns), pvc("plain"));
    await admin().create(jobs(ns), job("labelled-job", CREATED_BY));
    await admin().create(jobs(ns), job("plain-job"));
    await admin().patch(`${pvcs(ns)}/labelled`, { metadata: { annotations: { "walle.test/step": "updated" } } });
    await admin().delete(`${pvcs(ns)}/labelled`);
    await admin().delete(`${jobs(ns)}/labelled-job`, { propagationPolicy: "Background" });

    const pvcEvents = await waitForTypes(receiver, ns, "labelled", "delete", "the labelled PVC's delete event");
    const jobEvents = await waitForTypes(receiver, ns, "labelled-job", "delete", "the labelled Job's delete event");
    await settle();

    // In order, one sender per resource: add first, delete last, and the update in between carries the change.
    expect(typesOf(pvcEvents)[0]).toBe("add");
    expect(typesOf(jobEvents)[0]).toBe("add");
    const updated = pvcEvents.find((e) => bodyOf(e).metadata.annotations?.["walle.test/step"] === "updated");
    expect(updated?.headers["ce-type"]).toBe("dev.knative.apiserver.resource.update");

    const add = pvcEvents[0]!;
    expect(add.headers).toMatchObject({
      "content-type": "application/json",
      "ce-specversion": "1.0",
      "ce-type": "dev.knative.apiserver.resource.add",
      "ce-source": inject("clusterServer"),
      "ce-subject": `/apis/v1/namespaces/${ns}/persistentvolumeclaims/labelled`,
      "ce-kind": "PersistentVolumeClaim",
      "ce-apiversion": "v1",
      "ce-name": "labelled",
      "ce-namespace": ns,
    });
    expect(String(add.headers["ce-id"])).toMatch(uuid);
    expect(Date.parse(String(add.headers["ce-time"]))).not.toBeNaN();
    expect(bodyOf(add)).toMatchObject({ apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: { name: "labelled", namespace: ns, labels: CREATED_BY } });

    expect(jobEvents[0]?.headers).toMatchObject({
      "ce-subject": `/apis/batch/v1/namespaces/${ns}/jobs/labelled-job`,
      "ce-kind": "Job",
      "ce-apiversion": "batch/v1",
    });
    // A delete carries the object's last state.
    expect(bodyOf(pvcEvents.at(-1))).toMatchObject({ kind: "PersistentVolumeClaim", metadata: { name: "labelled" } });
    expect(bodyOf(jobEvents.at(-1))).toMatchObject({ kind: "Job", metadata: { name: "labelled-job" }, spec: { suspend: true } });

    // Unlabelled objects and objects that existed before the start produce nothing.
    for (const name of ["plain", "plain-job", "before"]) expect(eventsFor(receiver, ns, name)).toEqual([]);
    // A fresh id on every event.
    const ids = receiver.requests.map((r) => r.headers["ce-id"]);
    expect(new Set(ids).size).toBe(ids.length);
    expect(await source.failed()).toBe(0);
  });

  it("writes an empty namespace segment for cluster-scoped objects", async () => {
    const { receiver } = await start({});
    const name = `evsrc-set-${Date.now().toString(36)}`;
    const sets = "/apis/ros.io/v1/backupsets";
    await admin().create(sets, {
      apiVersion: "ros.io/v1",
      kind: "BackupSet",
      metadata: { name },
      spec: { selector: { matchLabels: { "ros.io/backupset": name } } },
    });
    try {
      const [added] = await waitFor(
        async () => {
          const events = receiver.requests.filter((r) => r.headers["ce-name"] === name);
          return events.length ? events : undefined;
        },
        `the add event of BackupSet ${name}`,
        30_000,
      );
      expect(added?.headers).toMatchObject({
        "ce-type": "dev.knative.apiserver.resource.add",
        "ce-subject": `/apis/ros.io/v1/namespaces//backupsets/${name}`,
        "ce-kind": "BackupSet",
        "ce-namespace": "",
      });
    } finally {
      await admin().delete(`${sets}/${name}`);
    }
  });

  it("sends only references in Reference mode", async () => {
    const ns = await createNamespace("evsrc-ref");
    const { receiver } = await start({ mode: "Reference" });
    await admin().create(pvcs(ns), pvc("ref", CREATED_BY));
    await admin().delete(`${pvcs(ns)}/ref`);

    const events = await waitForTypes(receiver, ns, "ref", "delete", "the PVC's ref.delete event");
    for (const e of events) expect(String(e.headers["ce-type"])).toMatch(/^dev\.knative\.apiserver\.ref\.(add|update|delete)$/);
    expect(events[0]?.headers["ce-type"]).toBe("dev.knative.apiserver.ref.add");
    // corev1.ObjectReference as the adapter marshals it, field order included.
    expect(events[0]?.body).toBe(JSON.stringify({ kind: "PersistentVolumeClaim", namespace: ns, name: "ref", apiVersion: "v1" }));
    expect(events.at(-1)?.body).toBe(events[0]?.body);
  });

  it("retries only what the adapter retries, with the same id, and drops an event after 5 retries", async () => {
    const ns = await createNamespace("evsrc-retry");
    // flaky: two 503s, then accepted. broken: 500, never retried. gone: always 503, dropped after 5 retries.
    const attempts = new Map<string, number>();
    const respond: Responder = (r) => {
      const name = String(r.headers["ce-name"]);
      const n = (attempts.get(name) ?? 0) + 1;
      attempts.set(name, n);
      if (r.headers["ce-namespace"] !== ns) return 200;
      if (name === "flaky") return n <= 2 ? 503 : 200;
      if (name === "broken") return 500;
      if (name === "gone") return 503;
      return 200;
    };
    const { source, receiver } = await start({}, respond);
    const failedBefore = await source.failed();
    for (const name of ["flaky", "broken", "gone"]) await admin().create(pvcs(ns), pvc(name, CREATED_BY));

    const gone = await waitFor(
      async () => {
        const events = eventsFor(receiver, ns, "gone");
        return events.length === ADAPTER_ATTEMPTS ? events : undefined;
      },
      "six attempts at the event of PVC gone",
      30_000,
    );
    await settle();

    const flaky = eventsFor(receiver, ns, "flaky");
    expect(flaky).toHaveLength(3);
    expect(new Set(flaky.map((e) => e.headers["ce-id"])).size).toBe(1);
    expect(eventsFor(receiver, ns, "broken")).toHaveLength(1);
    expect(eventsFor(receiver, ns, "gone")).toHaveLength(gone.length);
    expect(new Set(gone.map((e) => e.headers["ce-id"])).size).toBe(1);
    expect((await source.failed()) - failedBefore).toBe(2);
  });

  it("does not start while port 8080, where its health probes must bind, is taken", async () => {
    const squatter = http.createServer();
    await new Promise<void>((resolve) => squatter.listen(8080, resolve));
    try {
      await expect(start({})).rejects.toThrow(/port 8080 is taken: Knative's ApiServerSource adapter binds its health probes there/);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });

  it("exits, and the start fails naming why, when the manifest names a group/version the API server does not serve", async () => {
    const manifest = await manifestWith((m) => {
      m.spec.resources = [
        { apiVersion: "example.invalid/v1", kind: "Widget" },
        { apiVersion: "v1", kind: "PersistentVolumeClaim" },
      ];
    });
    await expect(start({ manifest })).rejects.toThrow(/apiserver_receive_adapter exited \(1\)[\s\S]*example\.invalid\/v1/);
  });

  it("honours spec.owner and the source's namespace, and skips a kind its group/version does not have", async () => {
    const ns = await createNamespace("evsrc-owner");
    const other = await createNamespace("evsrc-other");
    const manifest = await manifestWith((m) => {
      m.metadata = { name: "walle-reconcile", namespace: ns };
      delete m.spec.namespaceSelector;
      m.spec.owner = { apiVersion: "v1", kind: "ConfigMap" };
      m.spec.resources = [
        {
          apiVersion: "v1",
          kind: "PersistentVolumeClaim",
          selector: { matchExpressions: [{ key: "app.kubernetes.io/created-by", operator: "In", values: ["walle"] }] },
        },
        { apiVersion: "v1", kind: "Widget" },
      ];
      // The adapter runs as the source's service account, which lives beside it and may read PVCs there only.
      m.spec.serviceAccountName = "default";
    });
    await grantRole(
      ns,
      "event-source",
      [{ apiGroups: [""], resources: ["persistentvolumeclaims"], verbs: ["get", "list", "watch"] }],
      [{ kind: "ServiceAccount", name: "default", namespace: ns }],
    );
    const { source, receiver } = await start({ manifest });
    expect(source.watching).toHaveLength(1);
    expect(source.watching).toEqual([`/v1, Resource=persistentvolumeclaims/${ns}`]);

    const owner = await admin().create<KubeObject>(`/api/v1/namespaces/${ns}/configmaps`, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "owner" } });
    const ref = { apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: owner.metadata.uid ?? "" };
    await admin().create(pvcs(ns), pvc("controlled", CREATED_BY, { ownerReferences: [{ ...ref, controller: true }] }));
    await admin().create(pvcs(ns), pvc("merely-owned", CREATED_BY, { ownerReferences: [{ ...ref, controller: false }] }));
    await admin().create(pvcs(ns), pvc("orphan", CREATED_BY));
    await admin().create(pvcs(other), pvc("elsewhere", CREATED_BY));

    await waitFor(async () => eventsFor(receiver, ns, "controlled").length > 0, "the controlled PVC's event", 30_000);
    await settle();
    expect(eventsFor(receiver, ns, "merely-owned")).toEqual([]);
    expect(eventsFor(receiver, ns, "orphan")).toEqual([]);
    expect(eventsFor(receiver, other, "elsewhere")).toEqual([]);
  });

  it("feeds the reconcile function's HTTP shell, which accepts every event it sends", async () => {
    const ns = await createNamespace("evsrc-shell");
    const handled: CloudEventV1<unknown>[] = [];
    const server = createReceiver({
      async handle(_context, event) {
        handled.push(event);
        return { status: 200 };
      },
      log: createLogger({ function: "walle-reconcile", level: "silent" }),
    });
    const { port } = await server.listen(0, "127.0.0.1");
    stopAfter.push(() => server.close());
    const source = await startEventSource({ api: admin(), stateDir: inject("clusterStateDir"), sink: `http://127.0.0.1:${port}/` });
    stopAfter.push(() => source.stop());

    await admin().create(jobs(ns), job("fed", CREATED_BY));
    const event = await waitFor(async () => handled.find((e) => e.namespace === ns && e.name === "fed"), "the Job's event at the handler", 30_000);
    expect(event).toMatchObject({
      type: "dev.knative.apiserver.resource.add",
      kind: "Job",
      apiversion: "batch/v1",
      data: { kind: "Job", metadata: { name: "fed", namespace: ns } },
    });
    expect(await source.failed()).toBe(0);
  });
});

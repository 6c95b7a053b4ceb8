// The reconcile function under the conditions docs/architecture.md, Events says it lives in: ApiServerSource events that come
// duplicated, out of order or not at all; requests that are not CloudEvents at all; and a function that is
// killed between any two of its writes and started again. Each test watches what a user would see: the
// BackupJob's phase, the children made for it (counted by UID, from a watch started before they existed), the
// snapshots in the restic repository, and what is left in the cluster afterwards.
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from "vitest";
import { startEventSource } from "../../cluster/event-source.ts";
import { Label } from "../../lib/api/constants.ts";
import { Informer, type KubeObject } from "../../lib/k8s/informer.ts";
import type { RestClient } from "../../lib/k8s/rest.ts";
import { listSnapshots, startRestServer, tempDir, type RestServer } from "../integration/worker-harness.ts";
import { caller, FORCE_BACKUPS } from "../support/triggers.ts";
import {
  csiStorage,
  PASSWORD,
  pvcWithData,
  repositorySecret,
  settled,
  SNAP,
  storageLeft,
  type BackupJobObj,
  type Storage,
} from "../support/backup-fixtures.ts";
import { admin, createNamespace, waitFor } from "../support/kube.ts";
import { startWalle, type RunningWalle } from "../support/walle.ts";

const USER = "backup";
const INSTALL_NAMESPACE = "walle-system";
const BACKUP_JOBS = "/apis/ros.io/v1";

let rest: RestServer;

beforeAll(async () => {
  rest = await startRestServer({ dataDir: await tempDir("rest-resilience"), users: { [USER]: "rest-secret" } });
});
afterAll(async () => rest?.stop());

// ---- CloudEvents, as a client sends them

interface Reply {
  status: number;
  contentType: string;
  body: unknown;
}

async function post(url: string, headers: Record<string, string>, body: string | undefined): Promise<Reply> {
  const res = await fetch(url, { method: "POST", headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: kept as text, so an assertion shows it.
  }
  return { status: res.status, contentType: res.headers.get("content-type") ?? "", body: parsed };
}

/** Binary-mode headers of a CloudEvent 1.0. */
function ceHeaders(type: string, id: string = randomUUID(), extra: Record<string, string> = {}): Record<string, string> {
  return { "content-type": "application/json", "ce-specversion": "1.0", "ce-id": id, "ce-source": "/test/resilience", "ce-type": type, ...extra };
}

/** An admin's tool: a service account that RBAC allows to resync (walle-trigger-admin), made once per file. */
let resyncer: Promise<string> | undefined;
const resyncToken = () => (resyncer ??= caller(INSTALL_NAMESPACE, `resyncer-${randomUUID().slice(0, 8)}`, { clusterRole: "walle-trigger-admin" }));

/** What the tick (or an admin) sends to have all in-flight work driven one step, with its token. */
const resync = async (url: string): Promise<Reply> => post(url, { ...ceHeaders("io.ros.walle.resync"), authorization: `Bearer ${await resyncToken()}` }, "{}");

const backupJobPath = (ns: string, name: string) => `${BACKUP_JOBS}/namespaces/${ns}/backupjobs/${name}`;

async function createBackupJob(ns: string, name: string, spec: Record<string, unknown>): Promise<void> {
  await admin().create(`${BACKUP_JOBS}/namespaces/${ns}/backupjobs`, { apiVersion: "ros.io/v1", kind: "BackupJob", metadata: { name }, spec });
}

// ---- Watching what Walle creates

/**
 * Every VolumeSnapshot and Job Walle creates for the BackupJobs of one namespace, wherever it lives, recorded by
 * UID from a watch that starts before any of them exists. Deterministic names make a duplicate create meet
 * AlreadyExists; a second object of the same name made after the first was deleted shows as a second UID.
 */
interface ChildWatch {
  /** Per BackupJob: how many snapshot and Job objects were ever created, and under how many names. */
  created(backupJob: string): { snapshots: number; snapshotNames: number; jobs: number };
  stop(): void;
}

async function watchChildren(ns: string): Promise<ChildWatch> {
  const uids = new Map<string, Set<string>>();
  const names = new Map<string, Set<string>>();
  const record = (kind: string) => (_change: string, obj: KubeObject) => {
    const key = `${kind} ${obj.metadata.labels?.[Label.BackupJob] ?? "?"}`;
    if (!uids.has(key)) uids.set(key, new Set());
    if (!names.has(key)) names.set(key, new Set());
    uids.get(key)?.add(obj.metadata.uid ?? "");
    names.get(key)?.add(`${obj.metadata.namespace}/${obj.metadata.name}`);
  };
  const query = { labelSelector: `${Label.OwnerNamespace}=${ns}` };
  const informers = [
    new Informer<KubeObject>(admin(), `${SNAP}/volumesnapshots`, record("snapshot"), query),
    new Informer<KubeObject>(admin(), "/apis/batch/v1/jobs", record("job"), query),
  ];
  await Promise.all(informers.map((i) => i.start()));
  const watch: ChildWatch = {
    created: (bj) => ({
      snapshots: uids.get(`snapshot ${bj}`)?.size ?? 0,
      snapshotNames: names.get(`snapshot ${bj}`)?.size ?? 0,
      jobs: uids.get(`job ${bj}`)?.size ?? 0,
    }),
    stop: () => informers.forEach((i) => i.stop()),
  };
  onTestFinished(() => watch.stop());
  return watch;
}

interface Listed {
  metadata: { name: string; namespace?: string };
  spec?: { volumeSnapshotRef?: { namespace?: string } };
}

/**
 * What Walle left in the cluster for the BackupJobs of `ns`: its labelled children anywhere (snapshots,
 * contents, PVCs, Jobs, pods), any VolumeSnapshot in `ns`, and any VolumeSnapshotContent bound to a snapshot
 * of `ns` (the source snapshot's content carries no label of Walle's).
 */
async function leftovers(ns: string, since?: Storage): Promise<string[]> {
  const selector = { labelSelector: `${Label.OwnerNamespace}=${ns}` };
  const list = async (path: string, query?: Record<string, string>) => (await admin().get<{ items: Listed[] }>(path, query)).items;
  const show = (kind: string) => (o: Listed) => `${kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ""}${o.metadata.name}`;
  const found = [
    ...(await list(`${SNAP}/volumesnapshots`, selector)).map(show("VolumeSnapshot")),
    ...(await list(`${SNAP}/namespaces/${ns}/volumesnapshots`)).map(show("VolumeSnapshot")),
    ...(await list(`${SNAP}/volumesnapshotcontents`)).filter((c) => c.spec?.volumeSnapshotRef?.namespace === ns).map(show("VolumeSnapshotContent")),
    ...(await list(`${SNAP}/volumesnapshotcontents`, selector)).map(show("VolumeSnapshotContent")),
    ...(await list("/api/v1/persistentvolumeclaims", selector)).map(show("PersistentVolumeClaim")),
    ...(await list("/apis/batch/v1/jobs", selector)).map(show("Job")),
    ...(await list("/api/v1/pods", selector)).map(show("Pod")),
    ...(since ? await storageLeft(since) : []),
  ];
  return [...new Set(found)].sort();
}

/** Nothing is left, allowing the garbage collector and the snapshot controller a moment to finish. */
async function expectNothingLeft(ns: string, context?: string, since?: Storage): Promise<void> {
  await waitFor(async () => (await leftovers(ns, since)).length === 0, `nothing left for the BackupJobs of ${ns}`, 30_000).catch(() => {});
  expect(await leftovers(ns, since), context).toEqual([]);
}

// ---- 1. An event storm

/** mulberry32: a small seeded PRNG, so a storm can be replayed with the same seed. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface RecordedEvent {
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** 0 when dropped, else the copies forwarded. */
  readonly copies: number;
}

interface StormProxy {
  readonly url: string;
  readonly received: readonly RecordedEvent[];
  /** The function's answer to each copy forwarded. */
  readonly answers: readonly number[];
  close(): Promise<void>;
}

/**
 * A lossy, duplicating, reordering hop between the event source and the function. It acknowledges each event
 * at once, as a broker would, records it, drops about a third, and forwards the rest three times each. Copies
 * are gathered for a short window, shuffled, and sent concurrently, so duplicates of one event overlap each
 * other and the copies of the events next to it.
 */
async function startStormProxy(target: string, random: () => number, windowMs = 150): Promise<StormProxy> {
  const received: RecordedEvent[] = [];
  const answers: number[] = [];
  let window: RecordedEvent[] = [];
  const inFlight = new Set<Promise<void>>();

  const forward = (event: RecordedEvent) => {
    const p = post(target, { ...event.headers }, event.body).then(
      (reply) => void answers.push(reply.status),
      () => void answers.push(0),
    );
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };
  const flush = () => {
    const copies = window.flatMap((e) => Array.from({ length: e.copies }, () => e));
    window = [];
    for (let i = copies.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [copies[i], copies[j]] = [copies[j] as RecordedEvent, copies[i] as RecordedEvent];
    }
    copies.forEach(forward);
  };
  const timer = setInterval(flush, windowMs);

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if ((k.startsWith("ce-") || k === "content-type") && typeof v === "string") headers[k] = v;
      const event = { headers, body: Buffer.concat(chunks).toString("utf8"), copies: random() < 1 / 3 ? 0 : 3 };
      received.push(event);
      if (event.copies > 0) window.push(event);
      res.statusCode = 202;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    received,
    answers,
    async close() {
      clearInterval(timer);
      flush();
      await Promise.all(inFlight);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** POSTs a resync to the function every `everyMs` until stopped; returns the answers. */
function resyncEvery(url: string, everyMs: number): { answers: number[]; stop(): Promise<void> } {
  const answers: number[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await sleep(everyMs);
      if (!stopped)
        answers.push(
          await resync(url).then(
            (r) => r.status,
            () => 0,
          ),
        );
    }
  })();
  return {
    answers,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

describe("an event storm", () => {
  // WALLE_STORM_SEED replays another storm; the seed is in every assertion's message.
  it("duplicated ×3, shuffled, a third dropped, with resyncs: each BackupJob gets one snapshot and one Job, and finishes", async () => {
    const seed = Number(process.env.WALLE_STORM_SEED ?? 5);
    const walle = await startWalle({ eventSource: false });
    const before = await csiStorage();
    const ns = await createNamespace("storm");
    const children = await watchChildren(ns);
    const proxy = await startStormProxy(walle.url, seededRandom(seed));
    const source = await startEventSource({ api: admin(), stateDir: inject("clusterStateDir"), sink: proxy.url });
    const resyncs = resyncEvery(walle.url, 2_000);
    const stopStorm = async () => {
      await source.stop();
      await resyncs.stop();
      await proxy.close();
    };
    onTestFinished(stopStorm);

    const jobs = ["alpha", "beta", "gamma"];
    const repos = new Map(jobs.map((name) => [name, rest.repository(USER, "rest-secret", `storm-${ns}-${name}`)]));
    for (const name of jobs) {
      await pvcWithData(ns, `data-${name}`, { [`${name}.txt`]: `the ${name} volume` });
      await repositorySecret(ns, `repo-${name}`, repos.get(name) ?? "");
    }
    for (const name of jobs) await createBackupJob(ns, name, { sourcePvc: `data-${name}`, repository: { name: `repo-${name}`, namespace: ns } });

    const finished = await Promise.all(jobs.map((name) => settled(ns, name, 180_000)));
    await stopStorm();

    const context = `storm seed ${seed}`;
    expect(
      finished.map((bj) => [bj.metadata.name, bj.status?.phase]),
      context,
    ).toEqual(jobs.map((name) => [name, "Finished"]));
    expect(Object.fromEntries(jobs.map((name) => [name, children.created(name)])), context).toEqual(
      Object.fromEntries(jobs.map((name) => [name, { snapshots: 1, snapshotNames: 1, jobs: 1 }])),
    );
    for (const bj of finished) {
      const snapshots = await listSnapshots({ RESTIC_REPOSITORY: repos.get(bj.metadata.name) ?? "", RESTIC_PASSWORD: PASSWORD });
      expect(
        snapshots.map((s) => s.id),
        `${context}: restic snapshots of ${bj.metadata.name}`,
      ).toEqual([bj.status?.snapshotId]);
    }
    await expectNothingLeft(ns, context, before);

    // The storm was one: events were dropped and the rest arrived three times, all as binary-mode CloudEvents.
    const dropped = proxy.received.filter((e) => e.copies === 0).length;
    const forwarded = proxy.received.length - dropped;
    expect(dropped, context).toBeGreaterThan(0);
    expect(forwarded, context).toBeGreaterThan(dropped);
    expect(proxy.answers, context).toHaveLength(forwarded * 3);
    expect(proxy.received.every((e) => e.headers["ce-specversion"] === "1.0" && e.headers["ce-type"]?.startsWith("dev.knative.apiserver.resource."))).toBe(
      true,
    );
    expect(resyncs.answers.length, context).toBeGreaterThan(0);
    // Duplicates, reordering and concurrency are the function's normal weather: every copy was handled, or was
    // answered 503 (a copy whose decision lost the race to write status to a concurrent one, or an API server
    // that failed for a moment) so that ApiServerSource would send it again (docs/architecture.md, Events).
    const handledOrRetried = (s: number) => (s >= 200 && s < 300) || s === 503;
    expect(
      proxy.answers.filter((s) => !handledOrRetried(s)),
      context,
    ).toEqual([]);
    expect(
      resyncs.answers.filter((s) => !handledOrRetried(s)),
      context,
    ).toEqual([]);
    expect(resyncs.answers, context).toContain(200);
  }, 300_000);
});

// ---- 2. Malformed events

/** `<kind> <name>` → resourceVersion. */
type ObjectVersions = Record<string, string>;

/** The resourceVersion of every object in `ns` that Walle could touch, and the Events Walle reported there. */
async function walleState(ns: string): Promise<ObjectVersions> {
  const out: ObjectVersions = {};
  const collections = {
    BackupJob: `${BACKUP_JOBS}/namespaces/${ns}/backupjobs`,
    VolumeSnapshot: `${SNAP}/namespaces/${ns}/volumesnapshots`,
    PersistentVolumeClaim: `/api/v1/namespaces/${ns}/persistentvolumeclaims`,
    Job: `/apis/batch/v1/namespaces/${ns}/jobs`,
    Pod: `/api/v1/namespaces/${ns}/pods`,
  };
  for (const [kind, path] of Object.entries(collections)) {
    const list = await admin().get<{ items: { metadata: { name: string; resourceVersion: string } }[] }>(path);
    for (const o of list.items) out[`${kind} ${o.metadata.name}`] = o.metadata.resourceVersion;
  }
  const events = await admin().get<{ items: { metadata: { name: string; resourceVersion: string }; reportingController?: string }[] }>(
    `/apis/events.k8s.io/v1/namespaces/${ns}/events`,
  );
  for (const e of events.items.filter((e) => e.reportingController === "ros.io/walle-reconcile")) out[`Event ${e.metadata.name}`] = e.metadata.resourceVersion;
  const contents = await admin().get<{ items: Listed[] }>(`${SNAP}/volumesnapshotcontents`);
  for (const c of contents.items.filter((c) => c.spec?.volumeSnapshotRef?.namespace === ns)) out[`VolumeSnapshotContent ${c.metadata.name}`] = "exists";
  return out;
}

describe("malformed events", () => {
  it("get 400 (413 when too large) with a JSON error that names the problem, and change nothing in the cluster", async () => {
    const walle = await startWalle({ eventSource: false });
    const ns = await createNamespace("malformed");
    await pvcWithData(ns, "data", { "a.txt": "a" });
    await repositorySecret(ns, "repo", rest.repository(USER, "rest-secret", `malformed-${ns}`));
    await createBackupJob(ns, "untouched", { sourcePvc: "data", repository: { name: "repo", namespace: ns } });
    const bj = await admin().get<KubeObject>(backupJobPath(ns, "untouched"));
    // The event ApiServerSource would send for it; each case below breaks one thing about it.
    const data = JSON.stringify({ ...bj, apiVersion: "ros.io/v1", kind: "BackupJob" });
    const add = (extra: Record<string, string> = {}) =>
      ceHeaders("dev.knative.apiserver.resource.add", randomUUID(), {
        "ce-subject": `/apis/ros.io/v1/namespaces/${ns}/backupjobs/untouched`,
        "ce-kind": "BackupJob",
        "ce-name": "untouched",
        "ce-namespace": ns,
        ...extra,
      });
    const { "ce-id": _id, ...withoutId } = add();
    const huge = JSON.stringify({ ...JSON.parse(data), metadata: { ...bj.metadata, annotations: { padding: "x".repeat(1024 * 1024) } } });

    const cases: { what: string; headers: Record<string, string>; body: string; names: RegExp; status?: number }[] = [
      { what: "no id", headers: withoutId, body: data, names: /ce-id/ },
      { what: "a wrong specversion", headers: add({ "ce-specversion": "0.3" }), body: data, names: /specversion/ },
      { what: "bad JSON", headers: add(), body: data.slice(0, data.length / 2), names: /JSON/ },
      { what: "an unknown type", headers: add({ "ce-type": "dev.knative.apiserver.resource.frobnicate" }), body: data, names: /type/ },
      { what: "a body over 1 MiB", headers: add(), body: huge, names: /larger than/, status: 413 },
      { what: "data that is no Kubernetes object", headers: add(), body: JSON.stringify({ hello: "world" }), names: /data/ },
      // A trigger is authenticated before its data is parsed (trigger-auth.test.ts: without a token, 401): this caller may
      // force backups here, so it learns what is wrong with its request.
      {
        what: "a forced backup without a PVC",
        headers: { ...ceHeaders("io.ros.walle.backup.requested"), authorization: `Bearer ${await caller(ns, "ci", { own: FORCE_BACKUPS })}` },
        body: JSON.stringify({ namespace: ns }),
        names: /data\.pvc/,
      },
    ];

    const before = await walleState(ns);
    for (const c of cases) {
      const reply = await post(walle.url, c.headers, c.body);
      expect({ what: c.what, status: reply.status, contentType: reply.contentType }).toEqual({
        what: c.what,
        status: c.status ?? 400,
        contentType: expect.stringMatching(/^application\/json/),
      });
      expect(reply.body, c.what).toMatchObject({ error: expect.any(String) });
      expect(JSON.stringify(reply.body), c.what).toMatch(c.names);
    }
    expect(await walleState(ns)).toEqual(before);

    // The same event, well formed, does move the BackupJob: what the malformed ones did not do, they could have.
    expect((await post(walle.url, add(), data)).status).toBe(200);
    const moved = await admin().get<BackupJobObj>(backupJobPath(ns, "untouched"));
    expect(moved.status?.phase).toBe("CreatingSnapshot");
  });
});

// ---- 3. Killed between any two steps

/** What a killed function's requests meet: a reset connection, the transport error a dead process causes. */
class Killed extends Error {
  override name = "Killed";
  readonly code = "ECONNRESET";
}

/**
 * Kills the function, as far as the cluster can tell, right after its next successful write that concerns
 * `namespaces` (or is cluster-scoped): that write is applied, its answer is lost, and every request after it
 * fails without reaching the API server. Writes that change nothing (AlreadyExists, NotFound) do not count, nor do
 * the reviews that authenticate and authorize a trigger (a TokenReview or SubjectAccessReview is a question).
 */
function killAfterNextWrite(api: RestClient, namespaces: readonly string[]): { readonly killedAt: string | undefined } {
  const state: { killedAt: string | undefined } = { killedAt: undefined };
  const request = api.request.bind(api);
  const review = /^\/apis\/(authentication|authorization)\.k8s\.io\//;
  const concerns = (path: string) => !review.test(path) && (!path.includes("/namespaces/") || namespaces.some((ns) => path.includes(`/namespaces/${ns}/`)));
  api.request = async <T = unknown>(...args: Parameters<RestClient["request"]>): Promise<T> => {
    if (state.killedAt) throw new Killed(`the function was killed after ${state.killedAt}`);
    const [method, path] = args;
    const result = await request<T>(...args);
    if (state.killedAt) throw new Killed(`the function was killed after ${state.killedAt}`);
    if (method !== "GET" && concerns(path)) {
      state.killedAt = `${method} ${path.replace(/\/namespaces\/[^/]+\//, "/namespaces/…/")}`;
      throw new Killed(`the function was killed after ${state.killedAt}`);
    }
    return result;
  };
  return state;
}

interface Life {
  /** What the function found when it started: the BackupJob's phase, and where its worker Job was. */
  readonly found: string;
  /** The write right after which it died; none for the last one, which saw the BackupJob settle. */
  readonly killedAfter?: string;
}

/**
 * Drives a BackupJob to its end with functions that each die right after their first write: start one, send it
 * `first` (until that is accepted) or resyncs until it dies or the BackupJob is settled, and start the next.
 * When a death leaves the worker running, the worker finishes before the next function starts, so the next one
 * meets a completed Job whose result no status holds yet.
 */
async function driveThroughKills(o: { ns: string; namespaces: string[]; first?: (walle: RunningWalle) => Promise<boolean> }): Promise<Life[]> {
  const lives: Life[] = [];
  let needFirst = o.first !== undefined;
  for (let incarnation = 1; incarnation <= 60; incarnation++) {
    const found = await stateOf(o.ns);
    const walle = await startWalle({ eventSource: false });
    const life = killAfterNextWrite(walle.api, o.namespaces);
    try {
      for (let attempt = 0; ; attempt++) {
        if (needFirst && o.first) {
          needFirst = !(await o.first(walle));
        } else {
          const reply = await resync(walle.url);
          // 503 says the API server failed for a moment (a fresh CRD's watch cache answers 429): send it again.
          if (!life.killedAt && reply.status !== 503) expect(reply.status, JSON.stringify(reply.body)).toBe(200);
        }
        if (life.killedAt) break;
        if (!needFirst && (await stateOf(o.ns)).startsWith("settled")) return [...lives, { found }];
        if (attempt > 600) throw new Error(`incarnation ${incarnation} made no progress after ${attempt} resyncs`);
        await sleep(100);
      }
    } finally {
      await walle.stop();
    }
    lives.push({ found, killedAfter: life.killedAt });
    await workersDone(o.ns);
  }
  throw new Error(`the BackupJob did not settle through 60 incarnations:\n${story(lives)}`);
}

/** The one BackupJob of `ns`: "settled <phase>", or its phase and where its worker Job is. */
async function stateOf(ns: string): Promise<string> {
  const [bj] = (await admin().get<{ items: BackupJobObj[] }>(`${BACKUP_JOBS}/namespaces/${ns}/backupjobs`)).items;
  if (!bj) return "no BackupJob";
  const phase = bj.status?.phase ?? "NotStarted";
  const cleaned = bj.status?.conditions?.some((c) => c.type === "CleanedUp" && c.status === "True");
  if ((phase === "Finished" || phase === "Failed") && cleaned) return `settled ${phase}`;
  const jobs = await admin().get<{ items: JobObj[] }>("/apis/batch/v1/jobs", { labelSelector: `${Label.OwnerNamespace}=${ns}` });
  const job = jobs.items[0];
  return `${phase}${job ? `, worker Job ${jobEnded(job) ? "ended" : "running"}` : ""}`;
}

interface JobObj {
  status?: { conditions?: { type: string; status: string }[] };
}

const jobEnded = (j: JobObj) => j.status?.conditions?.some((c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True") === true;

function story(lives: readonly Life[]): string {
  return lives.map((l, i) => `${i + 1}. found ${l.found}; ${l.killedAfter ? `killed after ${l.killedAfter}` : "saw it settle"}`).join("\n");
}

/** Each named step was followed by a death at least once. */
function expectKilledAfter(lives: readonly Life[], steps: Record<string, RegExp>): void {
  const covered = Object.fromEntries(Object.entries(steps).map(([step, write]) => [step, lives.some((l) => write.test(l.killedAfter ?? ""))]));
  expect(covered, story(lives)).toEqual(Object.fromEntries(Object.keys(steps).map((step) => [step, true])));
  // And one function started to find the worker's Job ended while the BackupJob's status did not yet say so.
  expect(
    lives.map((l) => l.found),
    story(lives),
  ).toContainEqual(expect.stringMatching(/^(CreatingSnapshot|WaitingBackup|BackingUp), worker Job ended$/));
}

/** Waits for every worker Job of the BackupJobs of `ns` to complete or fail. */
async function workersDone(ns: string): Promise<void> {
  await waitFor(
    async () => {
      const jobs = await admin().get<{ items: JobObj[] }>("/apis/batch/v1/jobs", { labelSelector: `${Label.OwnerNamespace}=${ns}` });
      return jobs.items.every(jobEnded);
    },
    `the worker Jobs of ${ns} to end`,
    120_000,
  );
}

describe("killing the function between any two steps", () => {
  it("with the repository in the BackupJob's namespace: still Finished, one snapshot, no orphans", async () => {
    const before = await csiStorage();
    const ns = await createNamespace("kill-own");
    const children = await watchChildren(ns);
    const repo = rest.repository(USER, "rest-secret", `kill-${ns}`);
    await pvcWithData(ns, "data", { "state.db": "rows and rows" });
    await repositorySecret(ns, "repo", repo);
    await createBackupJob(ns, "survivor", { sourcePvc: "data", repository: { name: "repo", namespace: ns } });

    const lives = await driveThroughKills({ ns, namespaces: [ns] });

    const bj = await settled(ns, "survivor");
    const where = story(lives);
    expect(bj.status?.phase, where).toBe("Finished");
    expect(bj.status?.conditions?.find((c) => c.type === "BackupState")?.status, where).toBe("True");
    expect(children.created("survivor"), where).toEqual({ snapshots: 1, snapshotNames: 1, jobs: 1 });
    const snapshots = await listSnapshots({ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD });
    expect(
      snapshots.map((s) => s.id),
      where,
    ).toEqual([bj.status?.snapshotId]);
    await expectNothingLeft(ns, where, before);
    expectKilledAfter(lives, {
      "the VolumeSnapshot was created": /^POST \S+\/volumesnapshots$/,
      "the PVC from it was created": /^POST \S+\/persistentvolumeclaims$/,
      "the worker Job was created": /^POST \S+\/jobs$/,
      "a status was written": /^PATCH \S+\/backupjobs\/survivor\/status$/,
      "the worker Job was deleted": /^DELETE \S+\/jobs\/\S+$/,
    });
  }, 300_000);

  it("with the repository in the install namespace, forced by a CloudEvent: still Finished, one snapshot moved across, no orphans", async () => {
    const before = await csiStorage();
    const ns = await createNamespace("kill-shared");
    const children = await watchChildren(ns);
    const repo = rest.repository(USER, "rest-secret", `kill-shared-${ns}`);
    const secretName = `kill-${ns}`;
    await repositorySecret(INSTALL_NAMESPACE, secretName, repo);
    onTestFinished(async () => {
      await admin()
        .delete(`/api/v1/namespaces/${INSTALL_NAMESPACE}/secrets/${secretName}`)
        .catch(() => {});
    });
    await pvcWithData(ns, "app-data", { "db.sqlite": "rows" });

    // A client resends the same request (same id) until it is accepted, as ApiServerSource or curl in a loop would,
    // as a service account RBAC allows to back up this namespace into this shared repository.
    const request = { id: `force-${ns}`, body: JSON.stringify({ namespace: ns, pvc: "app-data", repository: { name: secretName } }) };
    const token = await caller(ns, "ci", { own: FORCE_BACKUPS, repositories: { verbs: ["backup"], names: [secretName] } });
    const accepted: Reply[] = [];
    const lives = await driveThroughKills({
      ns,
      namespaces: [ns, INSTALL_NAMESPACE],
      first: async (walle) => {
        const reply = await post(walle.url, { ...ceHeaders("io.ros.walle.backup.requested", request.id), authorization: `Bearer ${token}` }, request.body);
        if (reply.status === 202) accepted.push(reply);
        return reply.status === 202;
      },
    });

    const where = story(lives);
    const list = await admin().get<{ items: BackupJobObj[] }>(`${BACKUP_JOBS}/namespaces/${ns}/backupjobs`);
    expect(
      list.items.map((b) => b.metadata.name),
      where,
    ).toHaveLength(1);
    const name = list.items[0]?.metadata.name ?? "";
    expect(
      accepted.map((r) => r.body),
      where,
    ).toEqual([expect.objectContaining({ backupJob: { namespace: ns, name } })]);
    const bj = await settled(ns, name);
    expect(bj.status?.phase, where).toBe("Finished");
    // The source snapshot in the tenant's namespace and the one moved beside the repository, each made once.
    expect(children.created(name), where).toEqual({ snapshots: 2, snapshotNames: 2, jobs: 1 });
    const snapshots = await listSnapshots({ RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD });
    expect(
      snapshots.map((s) => s.id),
      where,
    ).toEqual([bj.status?.snapshotId]);
    expect((await admin().get<{ items: Listed[] }>(`/api/v1/namespaces/${ns}/secrets`)).items.map((s) => s.metadata.name)).not.toContain(secretName);
    await expectNothingLeft(ns, where, before);
    expectKilledAfter(lives, {
      "the BackupJob was created": /^POST \S+\/backupjobs$/,
      "the source VolumeSnapshot was created": /^POST \S+\/volumesnapshots$/,
      "the moved content was created": /^POST \S+\/volumesnapshotcontents$/,
      "the original content was deleted": /^DELETE \S+\/volumesnapshotcontents\/\S+$/,
      "the worker Job was created": /^POST \S+\/jobs$/,
      "a status was written": /^PATCH \S+\/backupjobs\/\S+\/status$/,
      "the worker Job was deleted": /^DELETE \S+\/jobs\/\S+$/,
    });
  }, 300_000);
});

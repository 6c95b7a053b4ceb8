// List+watch of one resource into a cache, as client-go's informers do: list, then watch from the list's
// resourceVersion, re-list when the watch expires (410 Gone) or fails, and tell the owner of every change.
import type { ObjectMeta, With } from "../api/kube.ts";
import { ApiError, type RestClient } from "./rest.ts";

/** Any object as the API server stores it: its name is always set. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: With<ObjectMeta, "name">;
}

export type ChangeType = "add" | "update" | "delete";

export const keyOf = (o: KubeObject): string => (o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name);

export class Informer<T extends KubeObject> {
  readonly cache = new Map<string, T>();
  private readonly abort = new AbortController();
  private synced!: Promise<void>;
  private stopped = false;

  private readonly client: RestClient;
  /** Collection path, e.g. /api/v1/pods or /apis/batch/v1/jobs. */
  readonly path: string;
  private readonly onChange: (type: ChangeType, obj: T, old?: T) => void;
  private readonly query: Record<string, string>;
  private readonly onError: (err: unknown) => void;

  constructor(
    client: RestClient,
    path: string,
    onChange: (type: ChangeType, obj: T, old?: T) => void,
    query: Record<string, string> = {},
    onError: (err: unknown) => void = () => {},
  ) {
    this.client = client;
    this.path = path;
    this.onChange = onChange;
    this.query = query;
    this.onError = onError;
  }

  /** Starts the loop; resolves once the first list is in the cache. */
  start(): Promise<void> {
    let markSynced!: () => void;
    let failSync!: (e: unknown) => void;
    this.synced = new Promise<void>((res, rej) => {
      markSynced = res;
      failSync = rej;
    });
    void this.loop(markSynced, failSync);
    return this.synced;
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.cache.get(namespace ? `${namespace}/${name}` : name);
  }

  private async relist(): Promise<string> {
    const list = await this.client.get<{ metadata: { resourceVersion: string }; items: T[] }>(this.path, this.query);
    const seen = new Set<string>();
    for (const item of list.items) {
      const key = keyOf(item);
      seen.add(key);
      const old = this.cache.get(key);
      this.cache.set(key, item);
      if (!old) this.onChange("add", item);
      else if (old.metadata.resourceVersion !== item.metadata.resourceVersion) this.onChange("update", item, old);
    }
    for (const [key, old] of this.cache) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.onChange("delete", old);
      }
    }
    return list.metadata.resourceVersion;
  }

  private async loop(markSynced: () => void, failSync: (e: unknown) => void): Promise<void> {
    let first = true;
    let rv = "";
    const startedAt = Date.now();
    while (!this.stopped) {
      try {
        if (!rv) {
          rv = await this.relist();
          if (first) {
            first = false;
            markSynced();
          }
        }
        await this.client.watch<T>(
          this.path,
          rv,
          (e) => {
            if (e.type === "BOOKMARK") {
              rv = e.object.metadata.resourceVersion ?? rv;
              return;
            }
            if (e.type === "ERROR") {
              rv = ""; // typically 410 Gone: the resourceVersion is too old; list again
              return;
            }
            rv = e.object.metadata.resourceVersion ?? rv;
            const key = keyOf(e.object);
            const old = this.cache.get(key);
            if (e.type === "DELETED") {
              this.cache.delete(key);
              this.onChange("delete", e.object);
            } else {
              this.cache.set(key, e.object);
              this.onChange(old ? "update" : "add", e.object, old);
            }
          },
          this.abort.signal,
          this.query,
        );
      } catch (err) {
        if (this.stopped) return;
        // A resource that was just created answers 429 while its watch cache initialises: keep trying for a while.
        if (first && Date.now() - startedAt > 30_000) {
          failSync(err);
          return;
        }
        this.onError(err);
        if (err instanceof ApiError && err.code === 410) rv = "";
        await new Promise((r) => setTimeout(r, first ? 200 : 500));
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
  }
}

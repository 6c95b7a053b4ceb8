// A function's configuration, read once from its environment and the original's operator config file.
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../lib/app/config.ts";

const file = (text: string) => async () => text;

describe("loadConfig", () => {
  it("takes the original's operator config file, and lets the environment override it", async () => {
    const yaml =
      "backup_job_image: ghcr.io/ros-io/walle-worker:1.0\ncluster_name: prod\nsnap_class_mappings:\n  - storage_class: fast\n    snapshot_class: fast-snaps\n";
    const c = await loadConfig(
      { WALLE_CONFIG: "/etc/walle/config.yml", WALLE_CLUSTER_NAME: "staging", POD_NAME: "walle-reconcile-abc" },
      "walle-reconcile",
      file(yaml),
    );
    expect(c.walle).toMatchObject({
      workerImage: "ghcr.io/ros-io/walle-worker:1.0",
      clusterName: "staging",
      snapClassMappings: [{ storage_class: "fast", snapshot_class: "fast-snaps" }],
      instance: "walle-reconcile-abc",
      installNamespace: "walle-system",
    });
    expect(c.serve).toEqual({ port: 8080, service: "walle-reconcile", logLevel: "info" });
  });

  it("gives workers their progress interval, 10 s unless set", async () => {
    expect((await loadConfig({ WALLE_WORKER_IMAGE: "w", WALLE_CLUSTER_NAME: "c" }, "walle-reconcile")).walle.progressIntervalSeconds).toBe(10);
    expect(
      (await loadConfig({ WALLE_WORKER_IMAGE: "w", WALLE_CLUSTER_NAME: "c", WALLE_PROGRESS_INTERVAL_SECONDS: "2" }, "walle-reconcile")).walle
        .progressIntervalSeconds,
    ).toBe(2);
  });

  it("takes Knative's PORT and K_SERVICE, and the trigger token", async () => {
    const c = await loadConfig(
      { WALLE_WORKER_IMAGE: "w", WALLE_CLUSTER_NAME: "c", PORT: "9000", K_SERVICE: "walle-reconcile-prod", WALLE_TRIGGER_TOKEN: "t0k3n" },
      "walle-reconcile",
    );
    expect(c.serve).toEqual({ port: 9000, service: "walle-reconcile-prod", triggerToken: "t0k3n", logLevel: "info" });
  });

  it("takes the PingSource that fires the tick of knative/ping, and refuses what cannot name one", async () => {
    const base = { WALLE_WORKER_IMAGE: "w", WALLE_CLUSTER_NAME: "c" };
    expect((await loadConfig({ ...base, WALLE_PINGSOURCE: "walle-tick" }, "walle-tick")).serve.pingSource).toBe("walle-tick");
    await expect(loadConfig({ ...base, WALLE_PINGSOURCE: "Walle Tick" }, "walle-tick")).rejects.toThrow(/a PingSource's name.*WALLE_PINGSOURCE/s);
  });

  it.each([
    [{ WALLE_CLUSTER_NAME: "c" }, /WALLE_WORKER_IMAGE \(or backup_job_image in WALLE_CONFIG\) is required/],
    [{ WALLE_WORKER_IMAGE: "w" }, /WALLE_CLUSTER_NAME \(or cluster_name in WALLE_CONFIG\) is required/],
    [{ WALLE_WORKER_IMAGE: "w", WALLE_CLUSTER_NAME: "c", PORT: "http" }, /PORT/],
    [{ WALLE_WORKER_IMAGE: "w", WALLE_CLUSTER_NAME: "c", WALLE_PROGRESS_SINK_URL: "not a url" }, /WALLE_PROGRESS_SINK_URL/],
    [{ WALLE_WORKER_IMAGE: "w", WALLE_CLUSTER_NAME: "c", LOG_LEVEL: "loud" }, /LOG_LEVEL/],
    [{ WALLE_WORKER_IMAGE: "w", WALLE_CLUSTER_NAME: "c", WALLE_PROGRESS_INTERVAL_SECONDS: "0" }, /WALLE_PROGRESS_INTERVAL_SECONDS/],
  ])("refuses %j, naming what is wrong", async (env, message) => {
    await expect(loadConfig(env, "walle-reconcile")).rejects.toThrow(ConfigError);
    await expect(loadConfig(env, "walle-reconcile")).rejects.toThrow(message);
  });

  it("names the config file and the field when the file is wrong", async () => {
    await expect(loadConfig({ WALLE_CONFIG: "/c.yml" }, "walle-reconcile", file("cluster_name: 7\n"))).rejects.toThrow(/WALLE_CONFIG \/c\.yml.*cluster_name/s);
    const unreadable = async () => {
      throw new Error("ENOENT: no such file");
    };
    await expect(loadConfig({ WALLE_CONFIG: "/missing.yml" }, "walle-reconcile", unreadable)).rejects.toThrow(
      /WALLE_CONFIG \/missing\.yml cannot be read: ENOENT/,
    );
  });
});

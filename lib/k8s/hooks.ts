// The executor's part of a snapshot hook (lib/core/hooks.ts decides): for each container in turn, a permit in
// ConfigMap walle-exec-permits (the exec admission policy's parameter: without it Walle may exec nothing), the
// command by pods/exec, the permit removed; then how it ended is merged into the status. A refused or failed exec is an outcome like any other: the hook failed, and says why.
import type { Logger } from "pino";
import { shortHash } from "../core/names.ts";
import { rfc3339 } from "../core/conditions.ts";
import { hookOutcome, hookOutput } from "../core/hooks.ts";
import type { HookCall } from "../core/decision.ts";
import { execInContainer, type ExecOptions, type ExecResult } from "./exec.ts";
import { objectPath } from "./paths.ts";
import { ApiError, type RestClient } from "./rest.ts";

/** The admission policy that bounds hook execs (knative/reconcile-bounds.yaml). */
const EXEC_POLICY = "walle-hook-exec";
/** How long an exec refused by that policy is tried again: its parameters come from the API server's cache. */
const ADMISSION_CATCH_UP_MS = 10_000;

/**
 * The exec, tried again while the policy refuses it: the label and the status that permit it were written just
 * before, and the policy reads its parameters from an informer that may not have seen them yet.
 */
export async function execAdmitted(exec: () => Promise<ExecResult>): Promise<ExecResult> {
  const until = Date.now() + ADMISSION_CATCH_UP_MS;
  for (;;) {
    try {
      return await exec();
    } catch (err) {
      const byPolicy = err instanceof ApiError && (err.code === 403 || err.code === 422) && err.message.includes(EXEC_POLICY);
      if (!byPolicy || Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** One exec Walle is about to run: where, what, and for which BackupJob. */
export interface ExecPermit {
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
  readonly backupJob: string;
  readonly command: string;
}

/** The permit's key in ConfigMap walle-exec-permits: what the policy's prefix check finds (`<ns>_<pod>_<container>_`). */
export function permitKey(p: ExecPermit): string {
  const key = `${p.namespace}_${p.pod}_${p.container}_${p.backupJob}`;
  // A ConfigMap key holds at most 253 characters; the BackupJob part gives way to a hash of itself.
  return key.length <= 253 ? key : `${p.namespace}_${p.pod}_${p.container}_${shortHash(p.backupJob, 12)}`;
}

/**
 * `work` while ConfigMap walle-exec-permits (the install namespace) permits this exec: the admission policy
 * walle-hook-exec lets Walle's service accounts run only what a permit there names. The permit goes whatever `work`
 * does.
 */
export async function whilePermitted<T>(api: RestClient, installNamespace: string, permit: ExecPermit, log: Logger, work: () => Promise<T>): Promise<T> {
  const path = objectPath("ConfigMap", EXEC_PERMITS, installNamespace);
  const key = permitKey(permit);
  await api.patch(path, { data: { [key]: permit.command } });
  try {
    return await work();
  } finally {
    await api
      .patch(path, { data: { [key]: null } })
      .catch((err: unknown) => log.warn({ err }, `Could not remove the exec permit ${key} from ConfigMap ${EXEC_PERMITS}`));
  }
}

/** `/bin/sh -c <command>` in the permit's container, while the permit is there: how Walle runs any command in a pod. */
export function execPermitted(
  api: RestClient,
  installNamespace: string,
  permit: ExecPermit,
  timeoutMs: number,
  log: Logger,
  opts: ExecOptions = {},
): Promise<ExecResult> {
  const target = { namespace: permit.namespace, pod: permit.pod, container: permit.container };
  return whilePermitted(api, installNamespace, permit, log, () =>
    execAdmitted(() => execInContainer(api, target, ["/bin/sh", "-c", permit.command], timeoutMs, opts)),
  );
}

/** The ConfigMap of exec permits (knative/reconcile-bounds.yaml). */
export const EXEC_PERMITS = "walle-exec-permits";

export async function performHook(api: RestClient, installNamespace: string, hook: HookCall, now: () => Date, log: Logger): Promise<void> {
  const path = objectPath("BackupJob", hook.backupJob, hook.namespace);
  const results: (ExecResult & { pod: string; container: string })[] = [];
  for (const t of hook.targets) {
    const permit = { namespace: hook.namespace, ...t, backupJob: hook.backupJob, command: hook.command };
    const r = await execPermitted(api, installNamespace, permit, hook.timeoutSeconds * 1000, log).catch((err: unknown): ExecResult => ({
      output: "",
      timedOut: false,
      error: err instanceof Error ? err.message : String(err),
    }));
    results.push({ ...r, ...t });
    log.info(
      { backupJob: `${hook.namespace}/${hook.backupJob}`, hook: hook.which, pod: t.pod, container: t.container, exitCode: r.exitCode, timedOut: r.timedOut },
      `Ran the ${hook.which}-snapshot hook in ${t.pod}/${t.container}`,
    );
    // A before-hook that failed in one container does not freeze the next: the after-hook thaws those it reached.
    if (hook.which === "before" && (r.exitCode !== 0 || r.timedOut)) break;
  }
  const outcome = hookOutcome(results);
  await api.patch(`${path}/status`, { status: { hooks: { [hook.which]: { finishTime: rfc3339(now()), outcome, output: hookOutput(results) } } } });
}

// The executor's part of a snapshot hook (lib/core/hooks.ts decides): the BackupJob is labelled while the hook
// runs (the exec admission policy's parameter: it lets the reconcile function run only the hook this status
// records, in the containers it names), the command runs by pods/exec in each container in turn, and how it ended
// is merged into the status. A refused or failed exec is an outcome like any other: the hook failed, and says why.
import type { Logger } from "pino";
import { Label } from "../api/constants.ts";
import { hookOutcome, hookOutput } from "../core/hooks.ts";
import type { HookCall } from "../core/decision.ts";
import { execInContainer, type ExecResult } from "./exec.ts";
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
async function execAdmitted(exec: () => Promise<ExecResult>): Promise<ExecResult> {
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

export async function performHook(api: RestClient, hook: HookCall, now: () => Date, log: Logger): Promise<void> {
  const path = objectPath("BackupJob", hook.backupJob, hook.namespace);
  const results: (ExecResult & { pod: string; container: string })[] = [];
  await api.patch(path, { metadata: { labels: { [Label.HookRunning]: "true" } } });
  try {
    for (const t of hook.targets) {
      const r = await execAdmitted(() => execInContainer(api, { namespace: hook.namespace, ...t }, ["/bin/sh", "-c", hook.command], hook.timeoutSeconds * 1000)).catch(
        (err: unknown): ExecResult => ({ output: "", timedOut: false, error: err instanceof Error ? err.message : String(err) }),
      );
      results.push({ ...r, ...t });
      log.info({ backupJob: `${hook.namespace}/${hook.backupJob}`, hook: hook.which, pod: t.pod, container: t.container, exitCode: r.exitCode, timedOut: r.timedOut }, `Ran the ${hook.which}-snapshot hook in ${t.pod}/${t.container}`);
      // A before-hook that failed in one container does not freeze the next: the after-hook thaws those it reached.
      if (hook.which === "before" && (r.exitCode !== 0 || r.timedOut)) break;
    }
  } finally {
    await api.patch(path, { metadata: { labels: { [Label.HookRunning]: null } } }).catch((err: unknown) => log.warn({ err }, `Could not remove label ${Label.HookRunning}`));
  }
  const outcome = results.length < hook.targets.length && hookOutcome(results) === "Succeeded" ? "Failed" : hookOutcome(results);
  await api.patch(`${path}/status`, { status: { hooks: { [hook.which]: { finishTime: now().toISOString().replace(/\.\d+Z$/, "Z"), outcome, output: hookOutput(results) } } } });
}

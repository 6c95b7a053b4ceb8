// Snapshot hooks, as pure decisions: which command runs before the snapshot and which after it is cut (the
// BackupJob's, which carries its schedule plan's, else the pods' ros.io/before-backup and ros.io/after-backup
// annotations), in which containers (of each running pod that mounts the PVC, the first container that mounts
// it), and what their outcome says. The promise kept here: once a before-hook has started, the after-hook runs,
// whatever else happens, because both are recorded in the BackupJob's status before they run.
import { HookOutcome, type BackupJobSpec, type BackupJobStatus, type HookRun } from "../api/backup-job.ts";
import { ConditionReason } from "../api/conditions.ts";
import { Annotation } from "../api/constants.ts";
import type { Pod } from "./objects.ts";

export type HookWhich = "before" | "after";
export type Hooks = NonNullable<BackupJobStatus["hooks"]>;

/** The most containers one hook runs in. */
export const MAX_HOOK_TARGETS = 16;
/** Past a hook's deadline, how long another instance waits before it calls the hook interrupted. */
export const HOOK_GRACE_SECONDS = 30;
export const DEFAULT_HOOK_TIMEOUT_SECONDS = 60;

const WHAT: Record<HookWhich, string> = { before: "before-snapshot hook", after: "after-snapshot hook" };

interface Target {
  readonly pod: Pod;
  readonly container: string;
}

/** The running pods that mount `pvc`, each with the first of its containers that mounts it (else its first). */
export function hookTargets(pods: readonly Pod[], pvc: string): Target[] {
  const out: Target[] = [];
  for (const pod of pods) {
    if (pod.status?.phase !== "Running" || pod.metadata.deletionTimestamp) continue;
    const volume = pod.spec.volumes?.find((v) => v.persistentVolumeClaim?.claimName === pvc);
    if (!volume) continue;
    const containers = pod.spec.containers ?? [];
    const container = containers.find((c) => c.volumeMounts?.some((m) => m.name === volume.name)) ?? containers[0];
    if (container) out.push({ pod, container: container.name });
  }
  return out.sort((a, b) => (a.pod.metadata.name ?? "").localeCompare(b.pod.metadata.name ?? ""));
}

export type HookPlan = { readonly hooks: Hooks | undefined; readonly note?: string } | { readonly error: string };

/**
 * The hooks of a backup of `pvc`, from the BackupJob, else its pods' annotations. No hook anywhere: none. A hook
 * with no running pod to run in: none either, and a note that says so (nothing writes to a volume no pod mounts).
 */
export function planHooks(spec: Pick<BackupJobSpec, "beforeSnapshot" | "afterSnapshot">, pods: readonly Pod[], pvc: string, namespace: string): HookPlan {
  const targets = hookTargets(pods, pvc);
  const one = (which: HookWhich): HookRun | { error: string } | undefined => {
    const own = which === "before" ? spec.beforeSnapshot : spec.afterSnapshot;
    const annotation = which === "before" ? Annotation.BeforeBackup : Annotation.AfterBackup;
    const chosen = own !== undefined && own.trim() !== "" ? targets : targets.filter((t) => t.pod.metadata.annotations?.[annotation]?.trim());
    if (chosen.length === 0) return undefined;
    if (chosen.length > MAX_HOOK_TARGETS)
      return { error: `${chosen.length} pods mount PVC ${namespace}/${pvc}; a ${WHAT[which]} runs in at most ${MAX_HOOK_TARGETS}.` };
    let command = own?.trim() ? own : undefined;
    if (command === undefined) {
      const commands = new Set(chosen.map((t) => t.pod.metadata.annotations?.[annotation] ?? ""));
      if (commands.size > 1)
        return {
          error: `The pods that mount PVC ${namespace}/${pvc} disagree on their ${annotation} annotation (${chosen.map((t) => t.pod.metadata.name).join(", ")}); give them one command, or set it on the BackupJob.`,
        };
      command = [...commands][0] ?? "";
    }
    return {
      command,
      from: own?.trim() ? "BackupJob" : "Annotation",
      targets: chosen.map((t) => ({ pod: t.pod.metadata.name ?? "", container: t.container })),
    };
  };
  const before = one("before");
  const after = one("after");
  for (const h of [before, after]) if (h && "error" in h) return { error: h.error };
  const b = before as HookRun | undefined;
  const a = after as HookRun | undefined;
  if (!b && !a) {
    const asked = [spec.beforeSnapshot?.trim() && "before", spec.afterSnapshot?.trim() && "after"].filter(Boolean);
    return {
      hooks: undefined,
      ...(asked.length > 0 ? { note: `No running pod mounts PVC ${namespace}/${pvc}: its ${asked.join(" and ")}-snapshot hook had nowhere to run.` } : {}),
    };
  }
  return { hooks: { ...(b ? { before: b } : {}), ...(a ? { after: a } : {}) } };
}

export type StreamPlan = NonNullable<BackupJobStatus["stream"]>;

/**
 * A backup of a command's output instead of the volume: the BackupJob's backupCommand (its schedule plan's), else
 * the ros.io/backup-command annotation of a pod that mounts the PVC; run in the first running pod that mounts it
 * (by name), in the first container that mounts it. Undefined when neither asks for one.
 */
export function planStream(
  spec: Pick<BackupJobSpec, "backupCommand">,
  pods: readonly Pod[],
  pvc: string,
  namespace: string,
): { stream: StreamPlan } | { error: string } | undefined {
  const targets = hookTargets(pods, pvc);
  const own = spec.backupCommand?.trim() ? spec.backupCommand : undefined;
  const target = own ? targets[0] : targets.find((t) => t.pod.metadata.annotations?.[Annotation.BackupCommand]?.trim());
  if (!target)
    return own ? { error: `No running pod mounts PVC ${namespace}/${pvc}: its backupCommand runs in the first container that mounts it.` } : undefined;
  return {
    stream: {
      command: own ?? target.pod.metadata.annotations?.[Annotation.BackupCommand] ?? "",
      from: own ? "BackupJob" : "Annotation",
      pod: target.pod.metadata.name ?? "",
      container: target.container,
      fileName: `${pvc}.${target.container}.stdout`,
    },
  };
}

/** Whether a step may find a backup of a command's output to make, from what it knows before planning it. */
export function mayStream(spec: Pick<BackupJobSpec, "backupCommand">, pods: readonly Pod[] | undefined): boolean {
  return Boolean(spec.backupCommand?.trim()) || (pods ?? []).some((p) => Boolean(p.metadata.annotations?.[Annotation.BackupCommand]?.trim()));
}

/** A hook that has started and not ended: run now by someone, or cut short with its runner. */
export function runningHook(hooks: Hooks | undefined): HookWhich | undefined {
  for (const which of ["before", "after"] as const) {
    const run = hooks?.[which];
    if (run?.startTime && !run.finishTime) return which;
  }
  return undefined;
}

/** Seconds a hook may take in all its containers, after which it is known not to run any more. */
export function hookLimitSeconds(run: HookRun, timeoutSeconds: number): number {
  return run.targets.length * timeoutSeconds + HOOK_GRACE_SECONDS;
}

/** The after-hook is still to run: it is planned, and it has not started. It runs once the before-hook has ended. */
export function afterHookDue(hooks: Hooks | undefined): boolean {
  return hooks?.after !== undefined && !hooks.after.startTime && (hooks.before === undefined || hooks.before.finishTime !== undefined);
}

/** The before-hook has ended other than well. */
export function beforeHookFailed(hooks: Hooks | undefined): boolean {
  return hooks?.before?.finishTime !== undefined && hooks.before.outcome !== HookOutcome.Succeeded;
}

/** What a hook's end says, in one sentence and the output's tail. */
export function describeHook(which: HookWhich, run: HookRun): string {
  const where = run.targets.map((t) => `${t.pod}/${t.container}`).join(", ");
  const how =
    run.outcome === HookOutcome.Succeeded
      ? "succeeded"
      : run.outcome === HookOutcome.TimedOut
        ? "timed out"
        : run.outcome === HookOutcome.Interrupted
          ? "was interrupted (Walle stopped while it ran)"
          : "failed";
  return `The ${WHAT[which]} (${run.from === "Annotation" ? "from the pods' annotation" : "from the BackupJob"}) ${how} in ${where}.${run.output ? ` Output: ${run.output}` : ""}`;
}

/** The Hooks condition the status gives: how far the hooks are, and how they ended. */
export function hooksCondition(hooks: Hooks): { status: "True" | "False"; reason: ConditionReason; message: string } {
  const ran = (["before", "after"] as const).flatMap((w) => (hooks[w]?.finishTime ? [describeHook(w, hooks[w])] : []));
  const running = runningHook(hooks);
  // What ended stays in the message (noteHooks records an Event for an end the message does not show yet).
  if (running)
    return {
      status: "False",
      reason: ConditionReason.HookRunning,
      message: [...ran, `Running the ${WHAT[running]} in ${hooks[running]?.targets.map((t) => `${t.pod}/${t.container}`).join(", ")}.`].join(" "),
    };
  const failed = (["before", "after"] as const).find((w) => hooks[w]?.finishTime && hooks[w].outcome !== HookOutcome.Succeeded);
  if (failed)
    return { status: "False", reason: failed === "before" ? ConditionReason.BeforeHookFailed : ConditionReason.AfterHookFailed, message: ran.join(" ") };
  const pending = (["before", "after"] as const).find((w) => hooks[w] && !hooks[w].finishTime);
  if (pending) return { status: "False", reason: ConditionReason.HookRunning, message: [...ran, `The ${WHAT[pending]} is still to run.`].join(" ") };
  return { status: "True", reason: ConditionReason.HooksSucceeded, message: ran.join(" ") };
}

/** A hook's outcome over its containers: the first to time out or fail decides; all at 0 is Succeeded. */
export function hookOutcome(results: readonly { exitCode?: number; timedOut: boolean }[]): HookOutcome {
  if (results.some((r) => r.timedOut)) return HookOutcome.TimedOut;
  return results.every((r) => r.exitCode === 0) ? HookOutcome.Succeeded : HookOutcome.Failed;
}

/** The output of a hook over its containers, each tail headed by where it ran, within `limit` characters. */
export function hookOutput(results: readonly { pod: string; container: string; exitCode?: number; output: string; error?: string }[], limit = 4000): string {
  const per = Math.floor(limit / Math.max(1, results.length)) - 80;
  return results
    .map((r) => {
      const text = `${r.output}${r.error ? `${r.output && !r.output.endsWith("\n") ? "\n" : ""}${r.error}` : ""}`.trimEnd();
      const tail = text.length > per ? `…${text.slice(text.length - per)}` : text;
      return `[${r.pod}/${r.container}${r.exitCode !== undefined ? ` exit ${r.exitCode}` : ""}] ${tail}`;
    })
    .join("\n")
    .slice(0, limit);
}

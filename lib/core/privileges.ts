// Who a worker runs as, decided by an admin and never by a tenant (docs/architecture.md, Security: workers, like VolSync's privileged movers).
//
// - Full fidelity where the worker runs in the install namespace, or in a namespace an admin annotated with
//   `ros.io/privileged-workers: "true"`: root, but with every capability dropped except the few its command needs.
//   The backup reads every file whatever its owner and mode; the restore gives back owners, setuid/setgid bits,
//   device nodes and file capabilities. Both meet Pod Security "baseline".
// - Unprivileged elsewhere, or wherever the BackupJob, BackupSchedule or BackupRestore gives a
//   workerSecurityContext: non-root, no capability at all (Pod Security "restricted"), as the user it names.
// Prune and check touch no volume, so they always run unprivileged.
import type { WorkerSecurityContext } from "../api/common.ts";
import { ConditionReason, ConditionType } from "../api/conditions.ts";
import { ConditionStatus, JobType } from "../api/constants.ts";
import type { ConditionInput } from "./conditions.ts";
import type { ObjectSummary } from "./objects.ts";

/** The annotation an admin puts on a namespace to let full-fidelity workers run in it. */
export const PRIVILEGED_WORKERS_ANNOTATION = "ros.io/privileged-workers";

/** The user an unprivileged worker runs as when nothing says otherwise (the images' non-root user). */
export const NONROOT = 65532;

/**
 * What each full-fidelity command may do beyond plain root, and nothing else.
 *
 * The backup's one capability is DAC_OVERRIDE: it reads every file and searches every directory. Its other half,
 * writing past file modes, finds nothing to write, since the snapshot and the root filesystem are mounted read-only
 * and the emptyDirs are the pod's own. The narrower-sounding DAC_READ_SEARCH is not used: it also unlocks
 * open_by_handle_at(2), which opens any inode of the volume's filesystem by handle, the "shocker" container
 * escape; this is why Pod Security baseline forbids it and allows DAC_OVERRIDE.
 *
 * The restore's: CHOWN (owners), FOWNER (modes, times and xattrs of files it then no longer owns), FSETID (setgid
 * for groups it is not in, setuid kept across chown), DAC_OVERRIDE (writing into directories restored read-only),
 * MKNOD (device nodes) and SETFCAP (file capabilities, the `security.capability` xattr). All are in baseline's list.
 */
export const PRIVILEGED_CAPABILITIES = {
  [JobType.Backup]: ["DAC_OVERRIDE"],
  [JobType.Restore]: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD", "SETFCAP"],
} as const;

/** Commands that touch a volume, and so may run privileged. */
export type VolumeCommand = keyof typeof PRIVILEGED_CAPABILITIES;

export interface UnprivilegedMode {
  readonly privileged: false;
  readonly runAsUser: number;
  readonly runAsGroup: number;
  readonly fsGroup: number;
  readonly supplementalGroups: readonly number[];
  /** Why it is unprivileged: the CR asked for it, or no admin allowed full fidelity in that namespace. */
  readonly because: "given" | "namespace";
}

export type WorkerMode = { readonly privileged: true } | UnprivilegedMode;

/** The default unprivileged worker: the images' non-root user. */
export const UNPRIVILEGED: UnprivilegedMode = {
  privileged: false,
  runAsUser: NONROOT,
  runAsGroup: NONROOT,
  fsGroup: NONROOT,
  supplementalGroups: [],
  because: "namespace",
};

/** Whether a namespace lets full-fidelity workers run: the install namespace always, others by an admin's annotation. */
export function allowsPrivilegedWorkers(namespace: string, installNamespace: string, object: ObjectSummary | null | undefined): boolean {
  return namespace === installNamespace || object?.metadata.annotations?.[PRIVILEGED_WORKERS_ANNOTATION] === "true";
}

/** Whether deciding the mode needs the worker namespace read: only when no context is given and it is not the install namespace. */
export function needsNamespaceRead(namespace: string, installNamespace: string, given: WorkerSecurityContext | undefined): boolean {
  return given === undefined && namespace !== installNamespace;
}

export function workerMode(allowed: boolean, given: WorkerSecurityContext | undefined): WorkerMode {
  if (given) {
    const runAsGroup = given.runAsGroup ?? given.runAsUser;
    return {
      privileged: false,
      runAsUser: given.runAsUser,
      runAsGroup,
      fsGroup: given.fsGroup ?? runAsGroup,
      supplementalGroups: given.supplementalGroups ?? [],
      because: "given",
    };
  }
  return allowed ? { privileged: true } : UNPRIVILEGED;
}

/** The pod and container security contexts of a worker in a mode. Everything else of the hardening is in both. */
export function workerSecurity(mode: WorkerMode, command: string): { pod: Record<string, unknown>; container: Record<string, unknown> } {
  const seccompProfile = { type: "RuntimeDefault" };
  const hardened = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true };
  const caps = mode.privileged && command in PRIVILEGED_CAPABILITIES ? PRIVILEGED_CAPABILITIES[command as VolumeCommand] : undefined;
  if (mode.privileged && caps) {
    // No fsGroup: the kubelet would re-group every file of the volume before a restore wrote its true owners.
    return {
      pod: { runAsUser: 0, runAsGroup: 0, runAsNonRoot: false, seccompProfile },
      container: { ...hardened, runAsNonRoot: false, capabilities: { drop: ["ALL"], add: [...caps] } },
    };
  }
  const user = mode.privileged ? UNPRIVILEGED : mode;
  return {
    pod: {
      runAsNonRoot: true,
      runAsUser: user.runAsUser,
      runAsGroup: user.runAsGroup,
      fsGroup: user.fsGroup,
      ...(user.supplementalGroups.length ? { supplementalGroups: [...user.supplementalGroups] } : {}),
      seccompProfile,
    },
    container: { ...hardened, runAsNonRoot: true, capabilities: { drop: ["ALL"] } },
  };
}

/** The `FullFidelity` condition: what the worker's mode keeps, and, plainly, what it cannot. */
export function fidelityCondition(mode: WorkerMode, command: VolumeCommand, workerNamespace: string): ConditionInput {
  if (mode.privileged) {
    return {
      type: ConditionType.FullFidelity,
      status: ConditionStatus.True,
      reason: ConditionReason.PrivilegedWorker,
      message:
        command === JobType.Backup
          ? `The worker runs as root with only DAC_OVERRIDE, in namespace ${workerNamespace}: it reads every file whatever its owner and mode.`
          : `The worker runs as root with only ${PRIVILEGED_CAPABILITIES.restore.join(", ")}, in namespace ${workerNamespace}: owners, modes including setuid/setgid, times, links, holes, device nodes and extended attributes are restored.`,
    };
  }
  const who = `uid ${mode.runAsUser}, gid ${mode.runAsGroup}${mode.fsGroup !== mode.runAsGroup ? `, fsGroup ${mode.fsGroup}` : ""}`;
  const why =
    mode.because === "given"
      ? "as its workerSecurityContext says"
      : `because namespace ${workerNamespace} does not allow full-fidelity workers (an admin allows them with the annotation ${PRIVILEGED_WORKERS_ANNOTATION}=true)`;
  const loses =
    command === JobType.Backup
      ? `It reads only what that user may read; any file it cannot read fails the backup as Incomplete.`
      : `Every restored file is owned by ${mode.runAsUser}:${mode.runAsGroup}, not by its original owner and group; device nodes and security.* extended attributes cannot be restored.`;
  return {
    type: ConditionType.FullFidelity,
    status: ConditionStatus.False,
    reason: ConditionReason.UnprivilegedWorker,
    message: `The worker runs unprivileged as ${who}, ${why}. ${loses}`,
  };
}

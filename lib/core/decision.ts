// The shapes every reconciler of the pure core shares: the reads a step needs, and the decision it returns
// (actions, the new status, Events, and when to look again). One executor in lib/k8s carries out any of them.
import { ConditionReason, type ConditionType, type EventReason } from "../api/conditions.ts";
import type { Condition } from "../api/common.ts";
import { ConditionStatus } from "../api/constants.ts";
import type { Manifest, WalleConfig } from "./builders.ts";
import { rfc3339, setCondition } from "./conditions.ts";

/** The kinds Walle reads and writes besides its own. */
export type KubeKind =
  | "BackupJob"
  | "BackupRestore"
  | "BackupSet"
  | "BackupSchedule"
  | "Job"
  | "Pod"
  | "PersistentVolumeClaim"
  | "PersistentVolume"
  | "StorageClass"
  | "VolumeSnapshot"
  | "VolumeSnapshotContent"
  | "VolumeSnapshotClass"
  | "Namespace";

export interface ObjectRef {
  readonly apiVersion: string;
  readonly kind: KubeKind;
  readonly namespace?: string;
  readonly name: string;
}

export type Action =
  | {
      readonly op: "create";
      readonly manifest: Manifest;
      /**
       * The controlling owner, when it is made in the same decision and its uid is not known yet (a BackupSet and
       * its BackupJobs): the executor learns the uid from the create, or reads the owner that already existed.
       */
      readonly ownedBy?: ObjectRef;
    }
  | { readonly op: "patch"; readonly target: ObjectRef; readonly patch: unknown }
  | { readonly op: "delete"; readonly target: ObjectRef };

export interface HookCall {
  readonly which: "before" | "after";
  /** The namespace of the pods, and of the BackupJob that the hook belongs to. */
  readonly namespace: string;
  readonly backupJob: string;
  readonly targets: readonly { readonly pod: string; readonly container: string }[];
  /** Run by /bin/sh -c in each target in turn. */
  readonly command: string;
  /** Per target. */
  readonly timeoutSeconds: number;
}

export interface KubeEvent {
  readonly type: "Normal" | "Warning";
  readonly reason: EventReason;
  readonly note: string;
}

export interface Decision<S> {
  readonly actions: readonly Action[];
  readonly status: S;
  readonly events: readonly KubeEvent[];
  /**
   * A second half, carried out only once `status` is written: actions that must not run before the result is
   * stored (the clean-up of a run that has just ended), and the status that records them done.
   */
  readonly then?: { readonly actions: readonly Action[]; readonly status: S };
  /**
   * A snapshot hook to run once `status` (which records that it starts) is written: the executor runs it through
   * pods/exec and writes how it ended into the status, and the object is stepped again at once.
   */
  readonly hook?: HookCall;
  /**
   * Seconds after which the object should be looked at again even if no event comes: a deadline the decision is
   * waiting on (a snapshot's timeout, say). The tick's resync honours it; undefined means an event will come.
   */
  readonly requeueAfter?: number;
}

/**
 * One read: an object by name (null when absent), or a list (from the API server's cache when `cached`). Each
 * object is parsed with its kind's schema, or, with `summary`, only for its metadata and where it is
 * (`objectSummarySchema`), so that one unreadable object cannot hide the others of a list.
 */
export type Read =
  | { readonly get: KubeKind; readonly name: string; readonly namespace?: string }
  | {
      readonly list: KubeKind;
      readonly namespace?: string;
      readonly labelSelector?: string;
      readonly cached?: boolean;
      readonly summary?: boolean;
      /** Items as they came, for a reader that parses each one itself and reports those that fail. */
      readonly unparsed?: boolean;
    };

/** The reads of one round, by the key of the world they fill. */
export type ReadPlan<O> = { readonly [K in keyof O]?: Read };

/**
 * One kind's reconciler: which reads a step needs, and what to do given them. `reads` is asked again with what
 * was read so far until it asks for nothing new, so a read that depends on another (a PVC's StorageClass) comes
 * in a later round; it never names a key already read. `decide` is pure: time is a parameter.
 */
export interface Reconciler<Obj, Observed, World, Status> {
  readonly kind: "BackupJob" | "BackupRestore" | "BackupSet";
  /** The reads the object needs now, given what has been read already. */
  reads(object: Obj, observed: Partial<Observed>, config: WalleConfig): ReadPlan<Observed>;
  /** The world `decide` sees: the object and what was read. */
  world(object: Obj, observed: Partial<Observed>): World;
  decide(world: World, config: WalleConfig, now: Date): Decision<Status>;
  /** An object the API server accepted but whose spec Walle cannot read (written before a rule existed). */
  invalid(status: Status, problems: readonly string[], now: Date): Decision<Status>;
  /**
   * The API server refused an action of a decision (an admission policy, RBAC, a quota): what becomes of the
   * object, which the refusal names. Without it, the refusal is an error of the step, and the step is tried again.
   */
  refused?(status: Status, refusal: string, now: Date): Decision<Status> | undefined;
}

/** A decision that changes nothing. */
export const unchanged = <S>(status: S): Decision<S> => ({ actions: [], status, events: [] });

interface Failing<S extends { readonly phase?: string }> {
  readonly kind: string;
  readonly failed: NonNullable<S["phase"]>;
  readonly condition: ConditionType;
  readonly event: EventReason;
}

/** Failed, once, with a condition and a Warning Event that say `message`; the clean-up of a failed run follows. */
function failing<S extends { readonly phase?: string; readonly conditions?: readonly Condition[] }>(
  how: Failing<S>,
  reason: ConditionReason,
  message: string,
  base: S,
  status: S,
  now: Date,
): Decision<S> {
  if (status.phase === how.failed) return unchanged(status);
  const conditions = setCondition(base.conditions, { type: how.condition, status: ConditionStatus.False, reason, message }, now);
  const failed = { ...base, phase: how.failed, finishTime: rfc3339(now), conditions } as S;
  return { actions: [], status: failed, events: [{ type: "Warning", reason: how.event, note: message }] };
}

/**
 * What a kind does with an object the API server accepted but whose spec Walle cannot read (written before a
 * rule existed, say): Failed, with a condition and an Event that name the fields; nothing is created for it.
 */
export function failsInvalid<S extends { readonly phase?: string; readonly conditions?: readonly Condition[] }>(
  how: Failing<S>,
): Reconciler<never, never, never, S>["invalid"] {
  // Only what the failure says: a status of its own, since nothing in the old one can be trusted.
  return (status, problems, now) => failing(how, ConditionReason.InvalidSpec, `The ${how.kind} is invalid: ${problems.join("; ")}`, {} as S, status, now);
}

/**
 * What a run does when the API server refuses what it must make: Failed, with the refusal as it was said (it names
 * the policy, the role or the quota to change), since trying again changes nothing until an admin does. What it made
 * before stays named in its status, so the clean-up of a failed run takes it away. A run that has ended already (its
 * clean-up was refused) keeps how it ended: undefined, and the step fails as it would have, to be tried again.
 */
export function failsRefused<S extends { readonly phase?: string; readonly finishTime?: string; readonly conditions?: readonly Condition[] }>(
  how: Failing<S>,
): NonNullable<Reconciler<never, never, never, S>["refused"]> {
  return (status, refusal, now) =>
    status.finishTime ? undefined : failing(how, ConditionReason.Refused, `The API server refused what the ${how.kind} needs: ${refusal}`, status, status, now);
}

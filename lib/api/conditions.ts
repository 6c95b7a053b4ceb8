// The condition types, condition reasons and Event reasons Walle writes, as `as const` tables (K8up's
// common_types.go in TypeScript). Nothing writes a reason that is not declared here, and nothing matches on a
// string that is not one of these, so a typo is a compile error rather than a condition nobody can find.
import type { Reason as WorkerReason } from "../restic/result.ts";
import type { ValueOf } from "./constants.ts";

/** Every condition type of every kind. A kind's own table (BackupJobConditionType, …) picks from these. */
export const ConditionType = {
  SnapshotReady: "SnapshotReady",
  BackupState: "BackupState",
  SnapshotResolved: "SnapshotResolved",
  TargetReady: "TargetReady",
  RestoreState: "RestoreState",
  /** True when the worker runs privileged (every file read, every owner restored); False says what is lost. */
  FullFidelity: "FullFidelity",
  /** The worker Job, its PVC and the snapshots are gone: nothing of the run is left but its status. */
  CleanedUp: "CleanedUp",
  /** (new) The before- and after-snapshot hooks: whether they ran, how they ended, and the tail of their output. */
  Hooks: "Hooks",
  BackupReady: "BackupReady",
  CheckOk: "CheckOk",
  PruneOk: "PruneOk",
} as const;
export type ConditionType = ValueOf<typeof ConditionType>;

/** Why a condition is as it is, in Kubernetes' CamelCase reason style. */
export const ConditionReason = {
  // Progress.
  Creating: "Creating",
  SnapshotReady: "SnapshotReady",
  Preparing: "Preparing",
  Resolved: "Resolved",
  Bound: "Bound",
  Deleting: "Deleting",
  Deleted: "Deleted",
  Completed: "Completed",
  PrivilegedWorker: "PrivilegedWorker",
  UnprivilegedWorker: "UnprivilegedWorker",
  // Failures a user acts on, each with a reason of its own.
  InvalidSpec: "InvalidSpec",
  PvcNotFound: "PvcNotFound",
  PvcNotBound: "PvcNotBound",
  NoSnapshotClass: "NoSnapshotClass",
  SnapshotFailed: "SnapshotFailed",
  SnapshotTimeout: "SnapshotTimeout",
  SnapshotDeleted: "SnapshotDeleted",
  WorkerLost: "WorkerLost",
  WorkerFailed: "WorkerFailed",
  /** The worker Job completed, but none of its own pods left a result Walle could decode. */
  NoResult: "NoResult",
  /** The API server refused to make what a run needs (an admission policy, RBAC, a quota), and said why. */
  Refused: "Refused",
  UnsupportedTarget: "UnsupportedTarget",
  TargetNotFound: "TargetNotFound",
  TargetInUse: "TargetInUse",
  InvalidTarget: "InvalidTarget",
  TargetExists: "TargetExists",
  HandoverFailed: "HandoverFailed",
  // Snapshot hooks.
  HookRunning: "HookRunning",
  NoHookTarget: "NoHookTarget",
  NoCommandTarget: "NoCommandTarget",
  StreamUnavailable: "StreamUnavailable",
  InvalidHook: "InvalidHook",
  HooksSucceeded: "HooksSucceeded",
  BeforeHookFailed: "BeforeHookFailed",
  AfterHookFailed: "AfterHookFailed",
  // A schedule's conditions, with the original's reasons.
  Waiting: "Waiting",
  Running: "Running",
  Finished: "Finished",
  FinishedWithFailures: "FinishedWithFailures",
  Failed: "Failed",
  Suspended: "Suspended",
  InvalidPlan: "InvalidPlan",
  NothingToBackUp: "NothingToBackUp",
  RepositoryBusy: "RepositoryBusy",
} as const;
/** A reason Walle decides, or one the worker reported in its result (lib/restic/result.ts), copied as it is. */
export type ConditionReason = ValueOf<typeof ConditionReason> | WorkerReason;

/** The `reason` of the Kubernetes Events Walle records, as `kubectl events` lists them. */
export const EventReason = {
  CreatingSnapshot: "CreatingSnapshot",
  SnapshotReady: "SnapshotReady",
  BackingUp: "BackingUp",
  BackupFinished: "BackupFinished",
  BackupFailed: "BackupFailed",
  Restoring: "Restoring",
  RestoreFinished: "RestoreFinished",
  RestoreFailed: "RestoreFailed",
  FinishedBackups: "FinishedBackups",
  FinishedWithFailures: "FinishedWithFailures",
  // A schedule's runs.
  BackupStarted: "BackupStarted",
  BackupSkipped: "BackupSkipped",
  NothingToBackUp: "NothingToBackUp",
  PvcSkipped: "PvcSkipped",
  InvalidPlan: "InvalidPlan",
  PruneStarted: "PruneStarted",
  CheckStarted: "CheckStarted",
  DeletedOldBackupSet: "DeletedOldBackupSet",
  DeletedOldJob: "DeletedOldJob",
  // Snapshot hooks.
  HookSucceeded: "HookSucceeded",
  HookFailed: "HookFailed",
  // The tick of knative/ping, fired by a PingSource that sends no identity (lib/app/sender-identity.ts).
  SenderIdentityOff: "SenderIdentityOff",
} as const;
export type EventReason = ValueOf<typeof EventReason>;

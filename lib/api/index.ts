// The ros.io/v1 API: schemas, types, constants and parse helpers. Import from here.
// The CRD and policy generators (crd.ts, structural.ts, tenant-guard.ts, manifests.ts) are left out on purpose:
// only scripts/crdgen.ts and the tests need them, and the functions should not load them at start-up.
export * from "./backup-job.ts";
export * from "./backup-restore.ts";
export * from "./backup-schedule.ts";
export * from "./backup-set.ts";
export * from "./common.ts";
export * from "./config.ts";
export * from "./constants.ts";
export * from "./parse.ts";
export * from "./registry.ts";

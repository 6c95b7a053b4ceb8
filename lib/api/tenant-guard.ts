import { backupJobKind } from "./backup-job.ts";
import { backupRestoreKind } from "./backup-restore.ts";
import { GROUP, INSTALL_NAMESPACE, TRUSTED_USERS, VERSION } from "./constants.ts";
import { MANIFEST_LABELS } from "./crd.ts";
import { celString } from "./rules.ts";

// The tenant guard (docs/architecture.md, Security): a namespaced BackupJob or BackupRestore may name a repository Secret only in its
// own namespace, unless one of Walle's own service accounts sends the request. The worker runs in the
// repository's namespace with the Secret mounted, so a reference to another namespace would let a tenant use
// (and restore from) someone else's repository. A ValidatingAdmissionPolicy enforces it inside the apiserver,
// for kubectl users as much as for Walle, with no webhook to run.
//
// Trusted: system:serviceaccount:walle-system:walle-reconcile and system:serviceaccount:walle-system:walle-tick.
// A restore from a shared repository is therefore admin-driven: an admin asks Walle (its trigger endpoint), and
// Walle's service account creates the BackupRestore.

export const TENANT_GUARD_NAME = "walle-tenant-guard";

const GUARDED = [backupJobKind, backupRestoreKind];

const celList = (values: readonly string[]): string => `[${values.map(celString).join(", ")}]`;

// An omitted namespace means the install namespace, where the original looked too; that is another namespace
// for every tenant, so it is checked like any other.
const REPOSITORY_NAMESPACE = `has(object.spec.repository.namespace) ? object.spec.repository.namespace : ${celString(INSTALL_NAMESPACE)}`;

// An update that leaves the repository alone passes, so the garbage collector and kubectl can still edit
// labels or finalizers of an object Walle created with a shared repository.
const SAME_NAMESPACE_OR_UNCHANGED =
  "variables.repositoryNamespace == request.namespace || " + "(request.operation == 'UPDATE' && oldObject.spec.repository == object.spec.repository)";

const DENIAL_MESSAGE = [
  celString("spec.repository.namespace: a "),
  "object.kind",
  celString(" in namespace "),
  "request.namespace",
  celString(" may only use a repository Secret in its own namespace, not in "),
  "variables.repositoryNamespace",
  celString(`; only Walle's service accounts (${TRUSTED_USERS.join(", ")}) may reference another namespace`),
].join(" + ");

// Snapshot hooks and backup commands run in the namespace's pods by pods/exec, as Walle: a BackupJob that carries
// one is the requester's exec, so only who may exec into the namespace's pods may make one (its spec is immutable,
// so its creation is the one moment to ask). Schedules are cluster-scoped, an admin's; Walle's own BackupJobs pass.
const HOOKS_BY_WHO_MAY_EXEC =
  "request.operation != 'CREATE' || request.resource.resource != 'backupjobs' || " +
  "(!has(object.spec.beforeSnapshot) && !has(object.spec.afterSnapshot) && !has(object.spec.backupCommand)) || " +
  "authorizer.group('').resource('pods').subresource('exec').namespace(request.namespace).check('create').allowed()";

const HOOKS_DENIAL = [
  celString("spec.beforeSnapshot, afterSnapshot and backupCommand run commands in the pods of namespace "),
  "request.namespace",
  celString(": only who may exec into them (create pods/exec there) may set them"),
].join(" + ");

export function tenantGuardPolicy() {
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingAdmissionPolicy",
    metadata: { name: TENANT_GUARD_NAME, labels: { ...MANIFEST_LABELS } },
    spec: {
      failurePolicy: "Fail",
      matchConstraints: {
        resourceRules: [
          {
            apiGroups: [GROUP],
            apiVersions: [VERSION],
            operations: ["CREATE", "UPDATE"],
            resources: GUARDED.map((kind) => kind.plural),
          },
        ],
      },
      matchConditions: [
        {
          name: "not-walle-service-account",
          expression: `!(request.userInfo.username in ${celList(TRUSTED_USERS)})`,
        },
      ],
      variables: [{ name: "repositoryNamespace", expression: REPOSITORY_NAMESPACE }],
      validations: [
        {
          expression: SAME_NAMESPACE_OR_UNCHANGED,
          messageExpression: DENIAL_MESSAGE,
          reason: "Forbidden",
        },
        {
          expression: HOOKS_BY_WHO_MAY_EXEC,
          messageExpression: HOOKS_DENIAL,
          reason: "Forbidden",
        },
      ],
    },
  };
}

export function tenantGuardBinding() {
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingAdmissionPolicyBinding",
    metadata: { name: TENANT_GUARD_NAME, labels: { ...MANIFEST_LABELS } },
    spec: { policyName: TENANT_GUARD_NAME, validationActions: ["Deny"] },
  };
}

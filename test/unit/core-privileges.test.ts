// The worker privilege model as pure decisions: which namespaces an admin allows full fidelity in, what a given
// security context does, the exact security contexts of each mode, and what the status says each mode loses.
import { describe, expect, it } from "vitest";
import { allowsPrivilegedWorkers, fidelityCondition, needsNamespaceRead, workerMode, workerSecurity } from "../../lib/core/privileges.ts";

const INSTALL = "walle-system";
const ns = (name: string, annotations?: Record<string, string>) => ({ metadata: { name, ...(annotations ? { annotations } : {}) } });

describe("where full-fidelity workers may run", () => {
  it.each([
    { name: "the install namespace, unread", namespace: INSTALL, object: undefined, want: true },
    { name: "a namespace an admin annotated", namespace: "db", object: ns("db", { "ros.io/privileged-workers": "true" }), want: true },
    { name: "a namespace annotated with anything but true", namespace: "db", object: ns("db", { "ros.io/privileged-workers": "yes" }), want: false },
    { name: "a namespace without the annotation", namespace: "db", object: ns("db"), want: false },
    { name: "a namespace that could not be found", namespace: "db", object: null, want: false },
  ])("$name: $want", ({ namespace, object, want }) => {
    expect(allowsPrivilegedWorkers(namespace, INSTALL, object)).toBe(want);
  });

  it("reads a namespace only when its annotation can decide", () => {
    expect(needsNamespaceRead(INSTALL, INSTALL, undefined)).toBe(false);
    expect(needsNamespaceRead("db", INSTALL, undefined)).toBe(true);
    expect(needsNamespaceRead("db", INSTALL, { runAsUser: 999 })).toBe(false);
  });
});

describe("the worker's mode", () => {
  it("is privileged where allowed, unless the CR gives a security context, which always wins", () => {
    expect(workerMode(true, undefined)).toEqual({ privileged: true });
    expect(workerMode(false, undefined)).toEqual({
      privileged: false,
      runAsUser: 65532,
      runAsGroup: 65532,
      fsGroup: 65532,
      supplementalGroups: [],
      because: "namespace",
    });
    expect(workerMode(true, { runAsUser: 999 })).toEqual({
      privileged: false,
      runAsUser: 999,
      runAsGroup: 999,
      fsGroup: 999,
      supplementalGroups: [],
      because: "given",
    });
    expect(workerMode(false, { runAsUser: 26, runAsGroup: 27, fsGroup: 28, supplementalGroups: [4, 5] })).toEqual({
      privileged: false,
      runAsUser: 26,
      runAsGroup: 27,
      fsGroup: 28,
      supplementalGroups: [4, 5],
      because: "given",
    });
  });

  const hardened = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true };
  const seccompProfile = { type: "RuntimeDefault" };

  it.each([
    {
      name: "a privileged backup: root with DAC_OVERRIDE alone, no fsGroup",
      mode: { privileged: true } as const,
      command: "backup",
      want: {
        pod: { runAsUser: 0, runAsGroup: 0, runAsNonRoot: false, seccompProfile },
        container: { ...hardened, runAsNonRoot: false, capabilities: { drop: ["ALL"], add: ["DAC_OVERRIDE"] } },
      },
    },
    {
      name: "a privileged restore: root with what owners, setuid/setgid, devices and file capabilities need",
      mode: { privileged: true } as const,
      command: "restore",
      want: {
        pod: { runAsUser: 0, runAsGroup: 0, runAsNonRoot: false, seccompProfile },
        container: {
          ...hardened,
          runAsNonRoot: false,
          capabilities: { drop: ["ALL"], add: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD", "SETFCAP"] },
        },
      },
    },
    {
      name: "a prune, even where privileged workers are allowed: it touches no volume",
      mode: { privileged: true } as const,
      command: "prune",
      want: {
        pod: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile },
        container: { ...hardened, runAsNonRoot: true, capabilities: { drop: ["ALL"] } },
      },
    },
    {
      name: "a given user: restricted, as that user and its groups",
      mode: workerMode(true, { runAsUser: 999, supplementalGroups: [5] }),
      command: "restore",
      want: {
        pod: { runAsNonRoot: true, runAsUser: 999, runAsGroup: 999, fsGroup: 999, supplementalGroups: [5], seccompProfile },
        container: { ...hardened, runAsNonRoot: true, capabilities: { drop: ["ALL"] } },
      },
    },
  ])("$name", ({ mode, command, want }) => {
    expect(workerSecurity(mode, command)).toEqual(want);
  });
});

describe("the FullFidelity condition", () => {
  it("says what a privileged worker keeps", () => {
    expect(fidelityCondition({ privileged: true }, "backup", INSTALL)).toEqual({
      type: "FullFidelity",
      status: "True",
      reason: "PrivilegedWorker",
      message: "The worker runs as root with only DAC_OVERRIDE, in namespace walle-system: it reads every file whatever its owner and mode.",
    });
    expect(fidelityCondition({ privileged: true }, "restore", INSTALL).message).toMatch(
      /CHOWN, DAC_OVERRIDE, FOWNER, FSETID, MKNOD, SETFCAP.*owners, modes including setuid\/setgid/,
    );
  });

  it("says plainly what an unprivileged worker cannot do, and how an admin changes it", () => {
    expect(fidelityCondition(workerMode(false, undefined), "backup", "db")).toEqual({
      type: "FullFidelity",
      status: "False",
      reason: "UnprivilegedWorker",
      message:
        "The worker runs unprivileged as uid 65532, gid 65532, because namespace db does not allow full-fidelity workers " +
        "(an admin allows them with the annotation ros.io/privileged-workers=true). It reads only what that user may read; " +
        "any file it cannot read fails the backup as Incomplete.",
    });
    expect(fidelityCondition(workerMode(true, { runAsUser: 999, fsGroup: 1000 }), "restore", "db").message).toBe(
      "The worker runs unprivileged as uid 999, gid 999, fsGroup 1000, as its workerSecurityContext says. Every restored file is " +
        "owned by 999:999, not by its original owner and group; device nodes and security.* extended attributes cannot be restored.",
    );
  });
});

// Shell commands as a user types them (bash -euo pipefail), in the checkout, for the tests that run the README's
// commands as written.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { repoRoot } from "../../cluster/toolchain.ts";

const run = promisify(execFile);

/** `script`'s stdout, with `env` added to this process's; its stderr and stdout in the error when it fails. */
export async function shell(script: string, env: Readonly<Record<string, string>>): Promise<string> {
  try {
    return (await run("bash", ["-euo", "pipefail", "-c", script], { cwd: repoRoot, env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`${script}\nfailed: ${e.stderr ?? ""}${e.stdout ?? ""}`, { cause: err });
  }
}

// A real restic rest-server on a free port of loopback (or of `host`: the real node's pods reach the host end of its
// link), for tests, benchmarks and local repositories: with htpasswd users and private repositories when users are
// given, without authentication otherwise. A given port serves a server started again where it was.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";

export interface RestServer {
  /** A restic repository string, credentials embedded as rest-server expects them when it has users. */
  repository(user: string, password: string, name: string): string;
  /** A repository on a server without authentication. */
  repositoryUrl(name: string): string;
  readonly port: number;
  stop(): Promise<void>;
}

export async function startRestServer(o: {
  binary: string;
  dataDir: string;
  users?: Record<string, string>;
  appendOnly?: boolean;
  host?: string;
  port?: number;
}): Promise<RestServer> {
  const host = o.host ?? "127.0.0.1";
  await mkdir(o.dataDir, { recursive: true });
  const auth: string[] = ["--no-auth"];
  if (o.users) {
    const htpasswd = path.join(o.dataDir, o.appendOnly ? ".htpasswd-append-only" : ".htpasswd");
    // {SHA}: base64 SHA-1, one of the forms rest-server reads (as `htpasswd -s` writes it).
    const lines = Object.entries(o.users).map(([u, p]) => `${u}:{SHA}${createHash("sha1").update(p).digest("base64")}`);
    await writeFile(htpasswd, `${lines.join("\n")}\n`);
    auth.splice(0, 1, "--htpasswd-file", htpasswd, "--private-repos");
  }
  const args = ["--listen", `${host}:${o.port ?? 0}`, "--path", o.dataDir, ...auth, ...(o.appendOnly ? ["--append-only"] : [])];
  const child = spawn(o.binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  const port = await new Promise<number>((resolve, reject) => {
    let seen = "";
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      const found = new RegExp(`start server on ${host.replace(/\./g, "\\.")}:(\\d+)`).exec(seen);
      if (found) resolve(Number(found[1]));
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => reject(new Error(`rest-server exited with ${code}: ${seen}`)));
  });
  return {
    port,
    repository: (user, password, name) => `rest:http://${user}:${password}@${host}:${port}/${user}/${name}`,
    repositoryUrl: (name) => `rest:http://${host}:${port}/${name}`,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

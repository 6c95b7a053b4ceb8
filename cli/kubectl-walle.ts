// The plugin's entry: kubectl walle <command>, with this process's streams and environment.
import { main } from "./main.ts";

process.exitCode = await main(process.argv.slice(2), { out: process.stdout, err: process.stderr, env: process.env, now: () => new Date() });

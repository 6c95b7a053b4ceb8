// check: verify the repository's structure and, optionally, read a subset of its data.
import { checkArgs } from "../../../lib/restic/args.ts";
import type { CheckConfig } from "../config.ts";
import { judge, resultOf, runCreatingRepository, type CommandResult, type WorkerContext } from "./shared.ts";
import { removeStaleLocks } from "./unlock.ts";

export async function check(config: CheckConfig, ctx: WorkerContext): Promise<CommandResult> {
  const subset = config.readDataSubset ? `, reading ${config.readDataSubset} of the data` : "";
  // check needs the repository to itself, like prune: an earlier attempt's lock (a killed pod) goes first.
  await removeStaleLocks(config, ctx);
  ctx.log.info({ repository: config.repository, readDataSubset: config.readDataSubset }, `Checking the repository${subset}.`);
  const run = await runCreatingRepository(
    { command: "check", args: checkArgs({ readDataSubset: config.readDataSubset, lockWait: config.lockWait }) },
    config,
    ctx,
  );
  const verdict = judge(run, config);
  if (verdict.reason !== "Completed") return resultOf(run, verdict);
  return { ...resultOf(run, verdict), message: `The repository has no errors${subset ? ` (read ${config.readDataSubset} of the data)` : ""}.` };
}

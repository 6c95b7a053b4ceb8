// Entry point of the reconcile function (a Knative Service): read the configuration once, connect to the API
// server (the pod's service account, or KUBECONFIG), and serve CloudEvents until the platform stops it.
import { loadConfig } from "../../lib/app/config.ts";
import { createReceiver, serve } from "../../lib/app/receiver.ts";
import { createWalle } from "../../lib/app/walle.ts";
import { clientFromEnv } from "../../lib/k8s/kubeconfig.ts";
import { createLogger, failStart } from "../../lib/log.ts";
import { handle } from "./index.ts";

const SERVICE = "walle-reconcile";

async function main(): Promise<void> {
  const { walle: config, serve: shell } = await failStart(SERVICE, () => loadConfig(process.env, SERVICE));
  const log = createLogger({ function: shell.service, level: shell.logLevel });
  const walle = createWalle({ api: await clientFromEnv(process.env), config, controller: `ros.io/${SERVICE}` });
  const receiver = createReceiver({
    log,
    handle: (context, event) => handle({ ...context, walle }, event),
    // Workers fetch the output of a backup command here (they have no API token to run it themselves).
    stream: (at, credentials, streamLog) => walle.streamCommand(at, credentials, streamLog),
    ...(shell.triggerToken ? { triggerToken: shell.triggerToken } : {}),
  });
  const address = await serve(receiver, shell.port, log);
  log.info({ port: address.port, tokenRequired: shell.triggerToken !== undefined }, "Started reconcile function");
}

if (import.meta.main) await main();

# Walle's images, one target each, built from the repository root with Node 24:
#
#   docker build --target reconcile -t <registry>/walle-reconcile:0.1.0 .
#   docker build --target tick      -t <registry>/walle-tick:0.1.0 .
#   docker build --target worker    -t <registry>/walle-worker:0.1.0 .
#
# Without Docker, `npm run images` (scripts/images.ts) builds the same images from locally made bases. The base
# images are build arguments (below); test/integration/dockerfile.test.ts builds this file with buildah against
# locally made stand-ins for them and finds the same config and file tree as `npm run images` gives.
#
# Each function is bundled into one ES module (npm run build: scripts/bundle.ts), plus the chunks of what it
# imports only when needed (<function>-chunks/), so the images need no node_modules and start fast (the
# worker's start counts against staying within 3% of bare restic).
#
# The run stages are distroless: no shell, no package manager, only Node and CA certificates (restic needs them
# for https backends). Both run as 65532 ("nonroot"), matching the pods' runAsUser, with a read-only root
# filesystem. The worker's pod must give restic writable space: an emptyDir at /tmp (restic writes pack files
# there before upload) and one for RESTIC_CACHE_DIR. With no ssh client and no rclone in the image, restic's sftp
# and rclone backends are not available; use rest, s3, b2, azure, gs or swift.

# restic from the official image, pinned to the version the tests build (toolchain/restic/go.mod). Pin the
# digest as well when publishing: restic/restic:0.18.1@sha256:<digest>. Its binary is static.
ARG RESTIC_IMAGE=docker.io/restic/restic:0.18.1
ARG NODE_BUILD_IMAGE=docker.io/library/node:24-bookworm-slim
ARG NODE_RUN_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

FROM ${RESTIC_IMAGE} AS restic

FROM ${NODE_BUILD_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Install scripts stay off (the pinned `node` package would download a second Node the build does not use);
# esbuild's own binary then comes from its platform package.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY cluster/toolchain.ts ./cluster/toolchain.ts
COPY scripts ./scripts
COPY lib ./lib
COPY functions ./functions
RUN node scripts/build.ts reconcile tick worker && mkdir -p /src/dist/node-compile-cache

FROM ${NODE_RUN_IMAGE} AS reconcile
COPY --from=build /src/dist/reconcile.mjs /app/reconcile.mjs
COPY --from=build /src/dist/reconcile-chunks /app/reconcile-chunks
# Node's compile cache, filled here by this image's own Node as the user that reads it (scripts/bundle.ts
# COMPILE_CACHE_DIR), so a cold start reads compiled code instead of parsing the bundle.
COPY --from=build --chown=65532:65532 /src/dist/node-compile-cache /app/.node-compile-cache
WORKDIR /app
ENV NODE_ENV=production \
    NODE_COMPILE_CACHE=/app/.node-compile-cache
USER 65532:65532
# The flags are scripts/bundle.ts nodeFlags.reconcile: keep the two in step.
RUN ["/nodejs/bin/node", "--max-semi-space-size=1", "--no-maglev", "--input-type=module", "-e", "await import('/app/reconcile.mjs')"]
EXPOSE 8080
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=1", "--no-maglev", "/app/reconcile.mjs"]

FROM ${NODE_RUN_IMAGE} AS tick
COPY --from=build /src/dist/tick.mjs /app/tick.mjs
COPY --from=build /src/dist/tick-chunks /app/tick-chunks
COPY --from=build --chown=65532:65532 /src/dist/node-compile-cache /app/.node-compile-cache
WORKDIR /app
ENV NODE_ENV=production \
    NODE_COMPILE_CACHE=/app/.node-compile-cache
USER 65532:65532
# The flags are scripts/bundle.ts nodeFlags.tick: keep the two in step. No arguments: one tick (the ScaledJob);
# `serve`: CloudEvents over HTTP (the PingSource's Knative Service).
RUN ["/nodejs/bin/node", "--max-semi-space-size=8", "--input-type=module", "-e", "await import('/app/tick.mjs')"]
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=8", "/app/tick.mjs"]

FROM ${NODE_RUN_IMAGE} AS worker
COPY --from=restic /usr/bin/restic /usr/bin/restic
COPY --from=build /src/dist/worker.mjs /app/worker.mjs
COPY --from=build /src/dist/worker-chunks /app/worker-chunks
WORKDIR /app
ENV NODE_ENV=production \
    RESTIC_BINARY=/usr/bin/restic \
    TMPDIR=/tmp
USER 65532:65532
# The Job's args name the command: backup, restore, prune, check or unlock.
ENTRYPOINT ["/nodejs/bin/node", "/app/worker.mjs"]
CMD ["backup"]

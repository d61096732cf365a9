# syntax=docker/dockerfile:1
# One image, one process type: `node dist/main.js` serves HTTP and runs the workers
# (ROLE=all|api|worker). The same image runs the migrations (`node dist/migrate.js`, the
# Kubernetes init step) and the fake payment gateway (`node dist/tools/scripts/payment-gateway.js`).
# Production runs compiled JavaScript: neither tsx nor TypeScript is in the runtime stage.

ARG NODE_IMAGE=node:20-bookworm-slim

# Compile with every dependency (TypeScript, tsx for the build script), then throw this stage away.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json tsconfig.build-tools.json ./
COPY src ./src
COPY scripts ./scripts
COPY dev ./dev
RUN npm run build

# Production dependencies only.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
# tini as PID 1 forwards SIGTERM to node and reaps children; the app itself drains on SIGTERM.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
# HOST: the app listens on 127.0.0.1 unless told otherwise, which nothing outside the container reaches.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
# Code and dependencies stay root-owned: the service user can read them, not change them.
# package.json is needed at run time: its "type": "module" makes node read dist/ as ES modules.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY --from=build /app/dist ./dist
# The base image's `node` user, given numerically so Kubernetes runAsNonRoot can verify it.
USER 1000:1000
# Fail the build, not the pod, when a module needs a package the prune removed: load every
# compiled module except the entry points (they connect to PostgreSQL and Redis or listen), then
# start each entry point far enough to print its usage.
RUN node --input-type=module -e " \
      import { readdirSync } from 'node:fs'; \
      const entries = ['main.js', 'migrate.js', 'tools/scripts/payment-gateway.js']; \
      const modules = readdirSync('dist', { recursive: true }) \
        .filter((f) => f.endsWith('.js') && !f.startsWith('http/statechart/') && !entries.includes(f)); \
      for (const f of modules) await import('./dist/' + f); \
      console.log('loaded ' + modules.length + ' modules'); \
      process.exit(0);" \
 && node dist/main.js --help >/dev/null \
 && node dist/migrate.js --help >/dev/null \
 && node dist/tools/scripts/payment-gateway.js --help >/dev/null
EXPOSE 3000
ENTRYPOINT ["/usr/bin/tini", "--"]
# Direct node rather than `npm start`: one process, so SIGTERM reaches the code that drains.
# The flags are src/node-flags.ts (test/ops/build.test.ts holds them equal).
CMD ["node", "--max-semi-space-size=32", "--heap-growing-percent=300", "dist/main.js"]

# syntax=docker/dockerfile:1
# One image, one process type: `node --import tsx src/main.ts` serves HTTP and runs the workers
# (ROLE=all|api|worker); the same image runs the fake payment gateway with another command.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# tsx (runs the TypeScript) and elkjs (served by /statechart) are runtime dependencies.
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
# tini as PID 1 forwards SIGTERM to node and reaps children; the app itself drains on SIGTERM.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    PORT=3000
WORKDIR /app
# Code and dependencies stay root-owned: the service user can read them, not change them.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY scripts ./scripts
# The base image's `node` user, given numerically so Kubernetes runAsNonRoot can verify it.
USER 1000:1000
# Fail the build, not the pod, when a module needs a package the prune removed: load every module
# under src/ except the entry point (main.ts would connect to PostgreSQL and Redis).
RUN TSX_DISABLE_CACHE=1 timeout 120 node --import tsx --input-type=module -e " \
      import { readdirSync } from 'node:fs'; \
      const modules = readdirSync('src', { recursive: true }) \
        .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts') && f !== 'main.ts'); \
      for (const f of modules) await import('./src/' + f); \
      console.log('loaded ' + modules.length + ' modules'); \
      process.exit(0);"
EXPOSE 3000
ENTRYPOINT ["/usr/bin/tini", "--"]
# Direct node rather than `npm start`: one process, so SIGTERM reaches the code that drains.
CMD ["node", "--import", "tsx", "src/main.ts"]

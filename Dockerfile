# syntax=docker/dockerfile:1
# One image, one process type: `node --import tsx src/main.ts` serves HTTP and runs the workers
# (ROLE=all|api|worker); the same image runs the fake payment gateway with another command.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The service runs TypeScript through tsx at run time, so tsx must survive the production prune.
# It is a devDependency today; this stage keeps it whichever section declares it, at the locked
# version, without touching the registry again: full `npm ci`, declare tsx as a runtime dependency
# in this stage's copy of package.json only, then prune dev dependencies.
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund \
 && node -e " \
      const fs = require('fs'); \
      const p = JSON.parse(fs.readFileSync('package.json', 'utf8')); \
      const spec = p.dependencies?.tsx ?? p.devDependencies?.tsx; \
      if (!spec) throw new Error('package.json declares no tsx, but the image runs through it'); \
      if (p.devDependencies) delete p.devDependencies.tsx; \
      p.dependencies = { ...p.dependencies, tsx: spec }; \
      fs.writeFileSync('package.json', JSON.stringify(p, null, 2));" \
 && npm prune --omit=dev --no-audit --no-fund \
 && node -e "require.resolve('tsx'); require.resolve('esbuild')"

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
EXPOSE 3000
ENTRYPOINT ["/usr/bin/tini", "--"]
# Direct node rather than `npm start`: one process, so SIGTERM reaches the code that drains.
CMD ["node", "--import", "tsx", "src/main.ts"]

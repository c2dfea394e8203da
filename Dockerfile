# syntax=docker/dockerfile:1
# Multi-stage build: compile with dev dependencies, ship production dependencies only.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY nest-cli.json tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx nest build && npm prune --omit=dev

FROM node:24-bookworm-slim AS runtime
# Two malloc arenas and a fixed mmap threshold: libvips' multi-MB decode buffers are returned to the
# OS instead of fragmenting per-thread arenas. And V8's young generation capped at 2 x 16 MB: Node 24's
# 2 x 64 MB default becomes resident a page at a time over hours. Without either, RSS creeps under
# sustained load (docs/notes/2026-11-25-memory-investigation.md).
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072 \
    NODE_OPTIONS="--max-semi-space-size=16" \
    PORT=3000 \
    METRICS_PORT=9464 \
    DATA_DIR=/data
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 3000 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# SIGTERM drains running generations (SHUTDOWN_DRAIN_MS) before exiting.
STOPSIGNAL SIGTERM
CMD ["node", "dist/main.js"]

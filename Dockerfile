# syntax=docker/dockerfile:1
# Sluice on Node 20: compiled in one stage, production dependencies installed in another, and a
# slim runtime image with only those two, running as the unprivileged `node` user.
#
#   docker build -t sluice .
#   # a token file (only hashes in it; each token is printed once):
#   docker run --rm -v sluice-tokens:/app/tokens sluice \
#     node dist/src/cli.js token create admin --role admin --file /app/tokens/tokens
#   docker run -p 4000:4000 -v sluice-data:/app/data -v sluice-tokens:/app/tokens:ro \
#     -e SLUICE_TOKENS_FILE=/app/tokens/tokens sluice
#
# The image listens on 0.0.0.0, so it refuses to start without SLUICE_TOKENS_FILE (or with
# SLUICE_ALLOW_ANONYMOUS=1, for a network nobody else can reach). Settings are environment
# variables (PORT, HOST, EVENT_STORE_URL, CONCURRENCY_CONFIG, SLUICE_TOKENS_FILE and the limits of
# the README's Security section); see docker-compose.yml for a run on EventStoreDB.

ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: TypeScript to dist/ ----------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: package.json's "prepare" runs the TypeScript build, which cannot work before the
# sources are copied; and compiling needs no native module, so better-sqlite3 is not built here.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY projections ./projections
RUN npm run build

# --- prod-deps: node_modules without dev dependencies ---------------------------------------------
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
# better-sqlite3 is native: a prebuilt binary when one matches this platform, else compiled.
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# --ignore-scripts keeps "prepare" (the TypeScript build: no typescript here) from running;
# the one install script that is needed, better-sqlite3's, runs through `npm rebuild`.
RUN npm ci --omit=dev --ignore-scripts \
  && npm rebuild better-sqlite3

# --- runtime ---------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=4000
WORKDIR /app
COPY --chown=node:node package.json ./
COPY --from=prod-deps --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
# The default store, sqlite:data/events.db, lives here; mount a volume to keep it. Tokens files
# go in /app/tokens: a named volume mounted there is writable by `sluice token create`.
RUN mkdir -p /app/data /app/tokens && chown node:node /app/data /app/tokens
USER node
EXPOSE 4000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 4000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/src/cli.js", "serve"]

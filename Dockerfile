# One image for both services; docker-compose.yml picks the entry point with `command`.
FROM denoland/deno:2.9.6

WORKDIR /app
# What the services and the scripts run in their containers (`deno task verify`, `token`, `dlq`)
# need, and nothing the tests and tools need (.dockerignore drops the *_test.ts files).
COPY --chown=deno:deno deno.json deno.lock ./
COPY --chown=deno:deno shared/ shared/
COPY --chown=deno:deno dialogs/ dialogs/
COPY --chown=deno:deno counters/ counters/
COPY --chown=deno:deno scripts/token.ts scripts/verify.ts scripts/dlq.ts scripts/
COPY --chown=deno:deno docker/image_deps.ts /tmp/
RUN chown deno:deno /app
USER deno

# Only the packages the entry points import, at the versions deno.lock pins (docker/image_deps.ts):
# the image gets no testcontainers or playwright-core, and builds the same every time.
RUN deno run --no-config --no-lock --allow-read --allow-write --allow-run /tmp/image_deps.ts \
  dialogs/main.ts counters/main.ts scripts/token.ts scripts/verify.ts scripts/dlq.ts

# A small young generation, and an old one grown 20% at a time, keep the resident set near 110 MB
# under load (docs/performance.md).
ENTRYPOINT ["deno", "run", "--frozen", "--v8-flags=--max-semi-space-size=4,--heap-growing-percent=20", "--allow-net", "--allow-env", "--allow-read", "--allow-sys"]
CMD ["dialogs/main.ts"]

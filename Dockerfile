# One image for both services; docker-compose.yml picks the entry point with `command`.
FROM denoland/deno:2.9.6

WORKDIR /app
COPY --chown=deno:deno deno.json deno.lock ./
COPY --chown=deno:deno shared/ shared/
COPY --chown=deno:deno dialogs/ dialogs/
COPY --chown=deno:deno counters/ counters/
COPY --chown=deno:deno scripts/ scripts/
RUN chown deno:deno /app
USER deno

# Dependencies come from the lock file only, so the image builds the same every time.
RUN deno install --frozen --entrypoint dialogs/main.ts counters/main.ts scripts/token.ts scripts/verify.ts

# A small young generation, and an old one grown 20% at a time, keep the resident set near 110 MB
# under load (docs/performance.md).
ENTRYPOINT ["deno", "run", "--frozen", "--v8-flags=--max-semi-space-size=4,--heap-growing-percent=20", "--allow-net", "--allow-env", "--allow-read", "--allow-sys"]
CMD ["dialogs/main.ts"]

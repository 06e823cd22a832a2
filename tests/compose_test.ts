/** docker-compose.yml agrees with the services' config schemas, and the compose CLI accepts it. */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { countersEnv } from "../counters/config.ts";
import { dialogsEnv } from "../dialogs/config.ts";
import { parseEnv } from "../shared/config.ts";
import { requiredEnvNames } from "../testing/config.ts";

interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
}

const composeFile = new URL("../docker-compose.yml", import.meta.url);
const compose = parse(await Deno.readTextFile(composeFile)) as {
  services: Record<string, ComposeService>;
};

/** Resolves `${VAR:-default}` the way compose does when VAR is unset. */
function interpolate(value: string): string {
  return String(value).replace(/\$\{[A-Z_]+:-([^}]*)\}/g, "$1");
}

const services = { dialogs: dialogsEnv, counters: countersEnv } as const;

Deno.test("docker-compose.yml runs Postgres, Redis, NATS and both services, each with a health check", () => {
  assert.deepEqual(
    Object.keys(compose.services).sort(),
    ["counters", "dialogs", "nats", "postgres", "redis"],
  );
  for (const [name, service] of Object.entries(compose.services)) {
    assert.ok(service.healthcheck?.test?.length, `${name} has a health check`);
  }
  assert.ok(compose.services.nats!.command!.includes("-js"), "NATS runs with JetStream");
});

for (const [name, shape] of Object.entries(services)) {
  Deno.test(`docker-compose.yml: ${name}'s environment matches its config schema`, () => {
    const service = compose.services[name]!;
    const env = Object.fromEntries(
      Object.entries(service.environment ?? {}).map(([k, v]) => [k, interpolate(v)]),
    );
    const known = Object.keys(shape);
    for (const key of Object.keys(env)) {
      assert.ok(known.includes(key), `${name} sets ${key}, which its config does not read`);
    }
    for (const key of requiredEnvNames(shape)) assert.ok(key in env, `${name} must set ${key}`);
    const config = parseEnv(shape, env) as Record<string, unknown>;

    const port = config.PORT as number;
    assert.ok(
      (service.ports ?? []).some((p) => p.endsWith(`:${port}`)),
      `${name} publishes its PORT ${port}`,
    );
    assert.equal(port, name === "dialogs" ? 8081 : 8082);

    for (const key of ["DATABASE_URL", "NATS_URL", "REDIS_URL"]) {
      if (!(key in config)) continue;
      const host = new URL(config[key] as string).hostname;
      assert.ok(host in compose.services, `${name}'s ${key} points at the compose service ${host}`);
      assert.equal(
        service.depends_on?.[host]?.condition,
        "service_healthy",
        `${name} waits for ${host} to be healthy`,
      );
    }
    assert.equal(new URL(config.DATABASE_URL as string).pathname, `/${name}`);
  });
}

Deno.test("docker-compose config accepts docker-compose.yml", async () => {
  const file = composeFile.pathname;
  const candidates: [string, string[]][] = [
    ["docker-compose", ["-f", file, "config", "-q"]],
    ["docker", ["compose", "-f", file, "config", "-q"]],
  ];
  const failures: string[] = [];
  for (const [cmd, args] of candidates) {
    let out: Deno.CommandOutput;
    try {
      out = await new Deno.Command(cmd, {
        args,
        stdout: "piped",
        stderr: "piped",
        env: { JWT_SECRET: "" },
      }).output();
    } catch {
      failures.push(`${cmd}: not installed`);
      continue;
    }
    const stderr = new TextDecoder().decode(out.stderr);
    if (cmd === "docker" && /is not a docker command|unknown command/i.test(stderr)) {
      failures.push("docker compose: plugin not installed");
      continue;
    }
    assert.equal(out.code, 0, `${cmd} ${args.join(" ")} rejected the file: ${stderr}`);
    return;
  }
  assert.fail(
    `no compose CLI to validate docker-compose.yml (${failures.join("; ")}); ` +
      "install docker-compose (apt-get install docker-compose) or Docker Compose v2",
  );
});

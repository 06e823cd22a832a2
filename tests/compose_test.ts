/**
 * docker-compose.yml, alone and merged with docker-compose.scale.yml, agrees with the services' config
 * schemas, and the compose CLI accepts both.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { countersEnv } from "../counters/config.ts";
import { dialogsEnv } from "../dialogs/config.ts";
import { parseEnv } from "../shared/config.ts";
import { requiredEnvNames } from "../testing/config.ts";
import { natsServers } from "../shared/jetstream.ts";
import {
  type ComposeDoc,
  type ComposeService,
  readCompose,
  readComposeFacts,
  startedServices,
} from "../scripts/compose_verify/compose_file.ts";
import { withoutStandins } from "../scripts/compose_verify/standins.ts";

const baseFile = new URL("../docker-compose.yml", import.meta.url).pathname;
const scaleFile = new URL("../docker-compose.scale.yml", import.meta.url).pathname;
const nginxConf = new URL("../docker/nginx/nginx.conf", import.meta.url).pathname;
const base = await readCompose([baseFile]);
const scaled = await readCompose([baseFile, scaleFile]);

/** Resolves `${VAR:-default}` the way compose does when VAR is unset. */
function interpolate(value: string): string {
  return String(value).replace(/\$\{[A-Z_]+:-([^}]*)\}/g, "$1");
}

const shapes = { dialogs: dialogsEnv, counters: countersEnv } as const;
type Kind = keyof typeof shapes;

/** The started services that run dialogs or counters, by their command. */
function instances(doc: ComposeDoc, kind: Kind): [string, ComposeService][] {
  return startedServices(doc).filter(([, s]) => s.command?.[0] === `${kind}/main.ts`);
}

/** Checks one instance's environment against its config schema and the file's other services. */
function checkInstance(doc: ComposeDoc, name: string, kind: Kind) {
  const service = doc.services[name]!;
  const started = new Set(startedServices(doc).map(([n]) => n));
  const shape = shapes[kind];
  const env = Object.fromEntries(
    Object.entries(service.environment ?? {}).map(([k, v]) => [k, interpolate(v)]),
  );
  const known = Object.keys(shape);
  for (const key of Object.keys(env)) {
    assert.ok(known.includes(key), `${name} sets ${key}, which its config does not read`);
  }
  for (const key of requiredEnvNames(shape)) assert.ok(key in env, `${name} must set ${key}`);
  const config = parseEnv(shape, env) as Record<string, unknown>;
  assert.equal(config.PORT, kind === "dialogs" ? 8081 : 8082);
  for (const key of ["DATABASE_URL", "NATS_URL", "REDIS_URL"]) {
    if (!(key in config)) continue;
    for (const url of natsServers(config[key] as string)) {
      const host = new URL(url).hostname;
      assert.ok(
        started.has(host),
        `${name}'s ${key} points at the started compose service ${host}`,
      );
      assert.equal(
        service.depends_on?.[host]?.condition,
        "service_healthy",
        `${name} waits for ${host} to be healthy`,
      );
    }
  }
  assert.equal(new URL(config.DATABASE_URL as string).pathname, `/${kind}`);
  return config;
}

Deno.test("docker-compose.yml runs Postgres, Redis, NATS and both services, each with a health check", () => {
  assert.deepEqual(
    startedServices(base).map(([n]) => n).sort(),
    ["counters", "dialogs", "nats", "postgres", "redis"],
  );
  for (const [name, service] of Object.entries(base.services)) {
    assert.ok(service.healthcheck?.test?.length, `${name} has a health check`);
  }
  assert.ok(base.services.nats!.command!.includes("-js"), "NATS runs with JetStream");
});

for (const kind of ["dialogs", "counters"] as const) {
  Deno.test(`docker-compose.yml: ${kind}'s environment matches its config schema and publishes its PORT`, () => {
    const config = checkInstance(base, kind, kind);
    const port = config.PORT as number;
    assert.ok(
      (base.services[kind]!.ports ?? []).includes(`${port}:${port}`),
      `${kind} publishes its PORT ${port}`,
    );
  });
}

Deno.test("docker-compose.scale.yml: two instances of each service, nginx, three NATS nodes, Postgres and Redis, each with a health check", () => {
  assert.deepEqual(startedServices(scaled).map(([n]) => n).sort(), [
    "counters-1",
    "counters-2",
    "dialogs-1",
    "dialogs-2",
    "nats",
    "nats-2",
    "nats-3",
    "nginx",
    "postgres",
    "redis",
  ]);
  for (const [name, service] of startedServices(scaled)) {
    assert.ok(service.healthcheck?.test?.length, `${name} has a health check`);
  }
  // Only the load balancer publishes ports: the same 8081 and 8082 as the simple file.
  const published = startedServices(scaled).flatMap(([n, s]) => (s.ports ?? []).map((p) => [n, p]));
  assert.deepEqual(published, [["nginx", "8081:8081"], ["nginx", "8082:8082"]]);
  assert.match(scaled.services.nginx!.image!, /^nginx:/, "the official nginx image");
});

for (const kind of ["dialogs", "counters"] as const) {
  Deno.test(`docker-compose.scale.yml: each ${kind} instance's environment matches its config schema, with R3 streams on all three NATS nodes`, () => {
    const found = instances(scaled, kind);
    assert.equal(found.length, 2);
    const nodes = startedServices(scaled).filter(([n]) => /^nats(-\d+)?$/.test(n))
      .map(([n]) => n);
    for (const [name] of found) {
      const config = checkInstance(scaled, name, kind);
      assert.deepEqual(
        natsServers(config.NATS_URL as string).map((u) => new URL(u).hostname).sort(),
        nodes.sort(),
        `${name} knows every NATS node`,
      );
      assert.equal(config.NATS_STREAM_REPLICAS, nodes.length, `${name} keeps a copy per node`);
      assert.equal(
        scaled.services.nginx!.depends_on?.[name]?.condition,
        "service_healthy",
        `nginx waits for ${name}`,
      );
    }
  });
}

Deno.test("docker-compose.scale.yml: the NATS nodes form one JetStream cluster, each with its own name and store", () => {
  const nodes = startedServices(scaled).filter(([n]) => /^nats(-\d+)?$/.test(n));
  assert.equal(nodes.length, 3);
  const flag = (command: string[], name: string) => command[command.indexOf(name) + 1];
  const names = new Set<string>();
  const stores = new Set<string>();
  for (const [name, service] of nodes) {
    const command = service.command!;
    assert.ok(command.includes("-js"), `${name} runs JetStream`);
    names.add(flag(command, "--server_name")!);
    assert.equal(flag(command, "--cluster_name"), "saga");
    const routes = flag(command, "--routes")!.split(",").map((r) => new URL(r).hostname).sort();
    assert.deepEqual(routes, nodes.map(([n]) => n).sort(), `${name} routes to every node`);
    const volume = service.volumes?.find((v) => v.endsWith(`:${flag(command, "-sd")}`));
    assert.ok(volume, `${name} keeps its store in a volume`);
    stores.add(volume.split(":")[0]!);
    assert.ok(String(service.healthcheck?.test).includes("/healthz"), `${name} checks /healthz`);
  }
  assert.equal(names.size, 3, "three server names");
  assert.equal(stores.size, 3, "three stores");
});

Deno.test("docker-compose.scale.yml: Redis saves snapshots into a volume", () => {
  const redis = scaled.services.redis!;
  const command = redis.command!;
  const save = command.indexOf("--save");
  assert.ok(
    save > 0 && /^\d+$/.test(command[save + 1]!),
    "redis-server --save <seconds> <changes>",
  );
  const dir = command[command.indexOf("--dir") + 1];
  assert.ok(redis.volumes?.some((v) => v.split(":")[1] === dir), "the snapshot folder is a volume");
});

Deno.test("docker/nginx/nginx.conf: every instance behind its port, the live stream unbuffered", async () => {
  const conf = await Deno.readTextFile(nginxConf);
  for (const kind of ["dialogs", "counters"] as const) {
    const block = new RegExp(`upstream ${kind} \\{([^}]*)\\}`).exec(conf)?.[1] ?? "";
    const servers = [...block.matchAll(/server ([\w-]+):(\d+)/g)].map((m) => `${m[1]}:${m[2]}`);
    const expected = instances(scaled, kind).map(([n, s]) => `${n}:${s.environment!.PORT}`);
    assert.deepEqual(servers.sort(), expected.sort(), `upstream ${kind}`);
    const port = kind === "dialogs" ? 8081 : 8082;
    assert.match(conf, new RegExp(`listen ${port};[^}]*proxy_pass http://${kind};`));
  }
  const stream = /location = \/api\/counters\/stream \{([^}]*)\}/.exec(conf)?.[1] ?? "";
  assert.match(stream, /proxy_pass http:\/\/counters;/);
  assert.match(stream, /proxy_buffering off;/);
  const timeout = /proxy_read_timeout (\d+)(s|m|h);/.exec(stream);
  assert.ok(timeout, "a read timeout for the stream");
  const seconds = Number(timeout[1]) * { s: 1, m: 60, h: 3600 }[timeout[2] as "s" | "m" | "h"];
  assert.ok(seconds * 1000 > 15_000 * 2, "longer than two heartbeats (SSE_HEARTBEAT_MS ≤ 15 s)");
});

/** Runs the compose CLI's `config` on `files`; undefined when no compose CLI is installed. */
async function composeConfig(files: string[]): Promise<string> {
  const flags = files.flatMap((f) => ["-f", f]);
  const candidates: [string, string[]][] = [
    ["docker-compose", [...flags, "config"]],
    ["docker", ["compose", ...flags, "config"]],
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
    assert.equal(out.code, 0, `${cmd} ${args.join(" ")} rejected the files: ${stderr}`);
    return new TextDecoder().decode(out.stdout);
  }
  assert.fail(
    `no compose CLI to validate the compose files (${failures.join("; ")}); ` +
      "install docker-compose (apt-get install docker-compose) or Docker Compose v2",
  );
}

for (
  const [label, files, doc] of [
    ["docker-compose.yml", [baseFile], base],
    ["docker-compose.yml with docker-compose.scale.yml", [baseFile, scaleFile], scaled],
  ] as const
) {
  Deno.test(`docker-compose config accepts ${label}, and merges it as the test reads it`, async () => {
    const merged = parse(await composeConfig([...files])) as {
      services: Record<string, ComposeService & { profiles?: string[] }>;
    };
    const theirs = Object.entries(merged.services).filter(([, s]) => !s.profiles?.length)
      .map(([n]) => n).sort();
    assert.deepEqual(theirs, startedServices(doc).map(([n]) => n).sort());
    for (const [name, service] of startedServices(doc)) {
      const env = Object.fromEntries(
        Object.entries(service.environment ?? {}).map(([k, v]) => [k, interpolate(v)]),
      );
      assert.deepEqual(merged.services[name]!.environment ?? {}, env, `${name}'s environment`);
      assert.deepEqual(merged.services[name]!.command, service.command, `${name}'s command`);
    }
  });
}

Deno.test("docker-compose.yml: --profile tracing adds Jaeger, which the services send their traces to", async () => {
  const jaeger = base.services.jaeger!;
  assert.deepEqual(jaeger.profiles, ["tracing"]);
  assert.match(jaeger.image!, /^jaegertracing\/all-in-one:/);
  assert.ok(jaeger.ports!.includes("16686:16686") && jaeger.ports!.includes("4318:4318"));
  for (const kind of ["dialogs", "counters"] as const) {
    const env = base.services[kind]!.environment!;
    assert.equal(env.OTEL_DENO, "${OTEL_DENO:-true}");
    assert.equal(env.OTEL_SERVICE_NAME, kind);
    assert.equal(new URL(env.OTEL_EXPORTER_OTLP_ENDPOINT!).host, "jaeger:4318");
  }
  const facts = await readComposeFacts([baseFile]);
  assert.ok(!facts.services.includes("jaeger"), "up without the profile starts no Jaeger");
  assert.deepEqual(withoutStandins(facts.profiled), [
    "jaeger (profile tracing) is not run: no stand-in for " +
    "docker.io/jaegertracing/all-in-one:1.76.0; the rest is checked",
  ]);
});

/**
 * Where integration tests find Postgres, Redis and NATS: TEST_* URLs, else the standard local ports,
 * else containers via testcontainers when Docker is reachable, else one line saying what is missing.
 */

/** URLs of the three servers the tests use. */
export interface TestServices {
  /** A Postgres server where tests may create and drop databases (any database in the path). */
  databaseUrl: string;
  redisUrl: string;
  natsUrl: string;
}

const LOCAL = {
  databaseUrl: "postgres://postgres@127.0.0.1:5432/postgres",
  redisUrl: "redis://127.0.0.1:6379",
  natsUrl: "nats://127.0.0.1:4222",
};

let resolved: Promise<TestServices> | undefined;

/** Resolves the services once per test process. */
export function testServices(): Promise<TestServices> {
  resolved ??= resolveServices();
  return resolved;
}

async function resolveServices(): Promise<TestServices> {
  const env = {
    databaseUrl: Deno.env.get("TEST_DATABASE_URL"),
    redisUrl: Deno.env.get("TEST_REDIS_URL"),
    natsUrl: Deno.env.get("TEST_NATS_URL"),
  };
  const given = Object.values(env).some(Boolean);
  const local = {
    databaseUrl: await answers(5432) ? LOCAL.databaseUrl : undefined,
    redisUrl: await answers(6379) ? LOCAL.redisUrl : undefined,
    natsUrl: await answers(4222) ? LOCAL.natsUrl : undefined,
  };
  const merged = {
    databaseUrl: env.databaseUrl ?? local.databaseUrl,
    redisUrl: env.redisUrl ?? local.redisUrl,
    natsUrl: env.natsUrl ?? local.natsUrl,
  };
  const missing = Object.entries(merged).filter(([, v]) => !v).map(([k]) => k);
  if (missing.length === 0) return merged as TestServices;
  if (!given && await dockerReachable()) return await startContainers(merged);
  const names: Record<string, string> = {
    databaseUrl: "Postgres (TEST_DATABASE_URL or 127.0.0.1:5432)",
    redisUrl: "Redis (TEST_REDIS_URL or 127.0.0.1:6379)",
    natsUrl: "NATS with JetStream (TEST_NATS_URL or 127.0.0.1:4222)",
  };
  throw new Error(
    `integration tests need ${missing.map((m) => names[m]).join(", ")}: ` +
      "set the TEST_* URLs, start the services locally (bash .ci/run does), or start Docker",
  );
}

async function answers(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

async function dockerReachable(): Promise<boolean> {
  if (Deno.env.get("DOCKER_HOST")) return true;
  try {
    return (await Deno.stat("/var/run/docker.sock")).isSocket ?? false;
  } catch {
    return false;
  }
}

// Only on a machine with Docker and without local services, e.g. a developer's laptop.
async function startContainers(known: Partial<TestServices>): Promise<TestServices> {
  const { GenericContainer, Wait } = await import("testcontainers");
  const result = { ...known };
  if (!result.databaseUrl) {
    const pg = await new GenericContainer("postgres:16-alpine")
      .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: "trust" })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    result.databaseUrl = `postgres://postgres@${pg.getHost()}:${pg.getMappedPort(5432)}/postgres`;
  }
  if (!result.redisUrl) {
    const redis = await new GenericContainer("redis:7-alpine").withExposedPorts(6379).start();
    result.redisUrl = `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`;
  }
  if (!result.natsUrl) {
    const nats = await new GenericContainer("nats:2.10-alpine")
      .withCommand(["-js"])
      .withExposedPorts(4222)
      .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
      .start();
    result.natsUrl = `nats://${nats.getHost()}:${nats.getMappedPort(4222)}`;
  }
  // Containers are removed by testcontainers' reaper when the test process exits.
  return result as TestServices;
}

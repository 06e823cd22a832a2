/** A service's HTTP server on PORT. */
import type { ServiceConfig } from "../config.ts";
import { redactUrl } from "../db.ts";
import type { Logger } from "../log.ts";

/** Where and as whom serveHttp serves. */
export interface ServeOptions {
  service: string;
  config: ServiceConfig;
  log: Logger;
  /** 0.0.0.0 unless given. */
  hostname?: string;
}

/**
 * Serves `fetch` (the app's, maybe behind a fast path) on PORT and logs the port it listens on,
 * with the database (password hidden). With REUSE_PORT, other processes may listen on the same
 * port (SO_REUSEPORT): the kernel hands each new connection to one of them.
 */
export function serveHttp(
  fetch: (req: Request) => Response | Promise<Response>,
  { service, config, log, hostname = "0.0.0.0" }: ServeOptions,
): Deno.HttpServer<Deno.NetAddr> {
  const server = Deno.serve({
    port: config.PORT,
    hostname,
    reusePort: config.REUSE_PORT ?? false,
    onListen: () => {},
  }, fetch);
  log.info(`${service} listening`, {
    port: server.addr.port,
    database: redactUrl(config.DATABASE_URL),
  });
  return server;
}

/** The ceiling of the benchmark: a bare Hono "hello" on Deno, nothing else. */
import { Hono } from "hono";

const port = Number(Deno.env.get("PORT") ?? 8090);
const app = new Hono().get("/", (c) => c.text("hello"));
Deno.serve({ port, hostname: "127.0.0.1", onListen: () => {} }, app.fetch);

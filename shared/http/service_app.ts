/**
 * The OpenAPIHono both services mount their routes on: `openapi()` checks a route's request in one
 * step, where @hono/zod-openapi chains a middleware per part (query, path, headers, media type,
 * JSON body).
 */
import { OpenAPIHono, type RouteConfig } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { z } from "zod";
import type { AppEnv } from "./app_env.ts";

/** A part of a request a route validates, as `c.req.valid()` names it. */
type Target = "query" | "param" | "header" | "json";

/** A failed validation, in the shape @hono/zod-validator hands its hook. */
export interface FailedValidation {
  success: false;
  error: z.ZodError;
  /** The input that failed. */
  data: unknown;
  target: Target;
}

/** What turns a failed validation into an answer: throws, or returns a Response or nothing. */
export type OnInvalid = (failed: FailedValidation, c: Context<AppEnv>) => unknown;

/**
 * An OpenAPIHono whose `openapi()` registers the route in the OpenAPI document as
 * @hono/zod-openapi does, and checks its request in the same order with the same answers (a 415
 * for a body that is not JSON, a 400 for malformed JSON, the default hook for what the schemas
 * refuse) inside the route's own handler: one step instead of up to five middleware, reading only
 * the headers the route declares (instead of copying every header into an object) and calling the
 * default hook only for failures. Routes with their own hook, cookies or a form body keep
 * @hono/zod-openapi's validators.
 */
export class ServiceApp extends OpenAPIHono<AppEnv> {
  constructor(options?: ConstructorParameters<typeof OpenAPIHono<AppEnv>>[0]) {
    super(options);
    const chained = this.openapi;
    this.openapi = ((route, handler, hook) => {
      const check = hook === undefined
        ? requestCheck(
          route.request,
          (failed, c) => this.defaultHook?.(failed as never, c as never),
        )
        : "unsupported";
      if (check === "unsupported") return chained(route, handler, hook);
      const { middleware, hide, ...config } = route;
      if (!hide) this.openAPIRegistry.registerPath(config);
      const before = middleware ? [middleware].flat() : [];
      const routeHandler = handler as unknown as MiddlewareHandler<AppEnv>;
      const checked: MiddlewareHandler<AppEnv> = check
        ? async (c, next) => (await check(c)) ?? routeHandler(c, next)
        : routeHandler;
      this.on([config.method], [config.path.replaceAll(/\/{(.+?)}/g, "/:$1")], ...before, checked);
      return this;
    }) as typeof chained;
  }
}

/**
 * The check of a route's `request`: it sets each validated part and resolves to undefined, or to
 * the Response the hook answered; undefined when there is nothing to check, "unsupported" for
 * what only @hono/zod-openapi's validators handle.
 */
export function requestCheck(
  request: RouteConfig["request"],
  onInvalid: OnInvalid,
): ((c: Context<AppEnv>) => Promise<Response | undefined>) | undefined | "unsupported" {
  if (!request) return undefined;
  if (request.cookies) return "unsupported";
  const { query, params, headers } = request;
  if (headers && !(headers instanceof z.ZodObject)) return "unsupported";
  const headerNames = headers ? Object.keys(headers.shape) : [];
  const content = request.body?.content ?? {};
  const mediaTypes = Object.keys(content);
  const schemaOf = (mediaType: string) => (content[mediaType] as { schema?: unknown }).schema;
  const zodTyped = mediaTypes.filter((t) => schemaOf(t) instanceof z.ZodType);
  if (zodTyped.some(isFormType)) return "unsupported";
  const jsonTypes = zodTyped.filter(isJsonType);
  if (jsonTypes.length > 1) return "unsupported";
  const jsonSchema = jsonTypes[0] ? schemaOf(jsonTypes[0]) as z.ZodType : undefined;
  const bodyRequired = request.body?.required === true;
  if (!query && !params && !headers && !jsonSchema) return undefined;

  return async (c) => {
    // parse() answers at once for synchronous schemas (all of ours): awaiting only a promise
    // spares a turn of the microtask queue per part.
    if (query) {
      const input: Record<string, string | string[]> = {};
      for (const [key, values] of Object.entries(c.req.queries())) {
        input[key] = values.length === 1 ? values[0]! : values;
      }
      let result = parse(query, input);
      if (result instanceof Promise) result = await result;
      if (!result.success) return refuse(c, onInvalid, "query", input, result.error);
      c.req.addValidatedData("query", result.data as object);
    }
    if (params) {
      const input = c.req.param() as Record<string, string>;
      let result = parse(params, input);
      if (result instanceof Promise) result = await result;
      if (!result.success) return refuse(c, onInvalid, "param", input, result.error);
      c.req.addValidatedData("param", result.data as object);
    }
    if (headers) {
      // Only the declared headers: the schema drops every other one anyway.
      const input: Record<string, string> = {};
      for (const name of headerNames) {
        const value = c.req.raw.headers.get(name);
        if (value !== null) input[name] = value;
      }
      let result = parse(headers, input);
      if (result instanceof Promise) result = await result;
      if (!result.success) return refuse(c, onInvalid, "header", input, result.error);
      c.req.addValidatedData("header", result.data as object);
    }
    if (jsonSchema) {
      // An empty Content-Type counts as none, as in @hono/zod-openapi.
      const contentType = c.req.raw.headers.get("content-type") || undefined;
      if (contentType !== undefined) {
        if (!mediaTypes.some((t) => acceptsMediaType(contentType, t))) throw unsupportedMediaType();
      } else if (await hasBody(c)) throw unsupportedMediaType();
      if (!bodyRequired && (contentType === undefined || !isJsonType(contentType))) {
        c.req.addValidatedData("json", {});
      } else {
        let input: unknown = {};
        if (contentType !== undefined && JSON_ESSENCE.test(essenceOf(contentType))) {
          try {
            input = await c.req.json();
          } catch {
            throw new HTTPException(400, { message: "Malformed JSON in request body" });
          }
        }
        let result = parse(jsonSchema, input);
        if (result instanceof Promise) result = await result;
        if (!result.success) return refuse(c, onInvalid, "json", input, result.error);
        c.req.addValidatedData("json", result.data as object);
      }
    }
    return undefined;
  };
}

/** The answer to a part that failed: the hook's, or what @hono/zod-validator answers without one. */
function refuse(
  c: Context<AppEnv>,
  onInvalid: OnInvalid,
  target: Target,
  data: unknown,
  error: z.ZodError,
): Response {
  const answer = onInvalid({ success: false, error, data, target }, c);
  return answer instanceof Response ? answer : c.json({ success: false, error }, 400);
}

/** safeParse, or safeParseAsync for a schema with asynchronous refinements. */
function parse(
  schema: z.ZodType,
  input: unknown,
): z.ZodSafeParseResult<unknown> | Promise<z.ZodSafeParseResult<unknown>> {
  try {
    return schema.safeParse(input);
  } catch (err) {
    if (err instanceof z.core.$ZodAsyncError) return schema.safeParseAsync(input);
    throw err;
  }
}

function unsupportedMediaType(): HTTPException {
  return new HTTPException(415, { message: "Unsupported Media Type" });
}

// The media-type tests of @hono/zod-openapi 1.6.3 (its 415 gate and which body it validates) and
// of Hono's validator (which bodies it parses as JSON), so that the answers stay theirs.
const JSON_TYPE = /^application\/([a-z-\.]+\+)?json/i;
const JSON_REQUEST = /^application\/([a-z-\.]+\+)?json(;\s*[a-zA-Z0-9\-]+\=([^;]+))*$/i;
const JSON_ESSENCE = /^application\/([\w.-]+\+)?json$/i;
const MULTIPART_REQUEST = /^multipart\/form-data(;\s?boundary=[a-zA-Z0-9'"()+_,\-./:=?]+)?$/i;
const URLENCODED_REQUEST = /^application\/x-www-form-urlencoded(;\s*[a-zA-Z0-9\-]+\=([^;]+))*$/i;

function isJsonType(mediaType: string): boolean {
  return JSON_TYPE.test(mediaType);
}

function isFormType(mediaType: string): boolean {
  const lower = mediaType.toLowerCase();
  return lower.startsWith("multipart/form-data") ||
    lower.startsWith("application/x-www-form-urlencoded");
}

function essenceOf(contentType: string): string {
  return contentType.split(";")[0]!.trim().toLowerCase();
}

/** Whether a request's Content-Type is one a route declares `mediaType` for. */
function acceptsMediaType(contentType: string, mediaType: string): boolean {
  if (mediaType === "*/*") return true;
  if (isJsonType(mediaType)) return JSON_REQUEST.test(contentType);
  if (isFormType(mediaType)) {
    return MULTIPART_REQUEST.test(contentType) || URLENCODED_REQUEST.test(contentType);
  }
  const essence = essenceOf(contentType);
  if (mediaType.endsWith("/*")) return essence.startsWith(mediaType.slice(0, -1).toLowerCase());
  return essence === mediaType.toLowerCase();
}

/** Whether a request without a Content-Type has a non-empty body (kept for the handler). */
async function hasBody(c: Context<AppEnv>): Promise<boolean> {
  if (c.req.raw.body === null) return false;
  return (await c.req.arrayBuffer()).byteLength > 0;
}

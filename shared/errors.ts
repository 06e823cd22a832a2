/** The AppError family and its mapping to RFC 9457 problem+json bodies. */
import type { z } from "zod";
import type { FieldErrorSchema, ProblemSchema } from "./openapi.ts";
import { type ProblemType, problemTypePath } from "./problems.ts";

/** One invalid field of a request, as listed in a validation problem. */
export type FieldError = z.infer<typeof FieldErrorSchema>;

/** An RFC 9457 problem details body. */
export type Problem = z.infer<typeof ProblemSchema>;

/** An error that the HTTP layer answers with its own status and problem type. */
export class AppError extends Error {
  readonly status: number;
  readonly type: ProblemType;
  readonly errors?: FieldError[];

  constructor(
    status: number,
    type: ProblemType,
    message: string,
    options?: { cause?: unknown; errors?: FieldError[] },
  ) {
    super(message, { cause: options?.cause });
    this.name = "AppError";
    this.status = status;
    this.type = type;
    this.errors = options?.errors;
  }
}

/** 400: the request is malformed or fails validation. */
export function badRequest(message: string, errors?: FieldError[]): AppError {
  return new AppError(400, "validation-error", message, { errors });
}

/** 401: no valid credentials. */
export function unauthorized(message: string): AppError {
  return new AppError(401, "unauthorized", message);
}

/** 404: nothing the caller may see has this id. */
export function notFound(message: string): AppError {
  return new AppError(404, "not-found", message);
}

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Payload Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** The title RFC 9457 suggests: the reason phrase of the status. */
function titleFor(status: number): string {
  return TITLES[status] ?? (status >= 500 ? "Server Error" : "Client Error");
}

/** Builds the problem body for an error status. */
export function problem(
  status: number,
  type: ProblemType,
  detail: string,
  errors?: FieldError[],
): Problem {
  return {
    // Relative: the service that answers resolves it to its own page (problemResponse).
    type: problemTypePath(type),
    title: titleFor(status),
    status,
    detail,
    ...(errors ? { errors } : {}),
  };
}

/** One zod issue, as much of it as fieldErrors reads. */
interface Issue {
  path: readonly PropertyKey[];
  message: string;
  code?: string;
  expected?: unknown;
}

/** The value at `path` in `input`, or undefined. */
function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/**
 * Turns zod issues into the `errors` list of a validation problem. Given the input that failed,
 * a field that is absent says it is required, instead of zod's "expected string, received
 * undefined".
 */
export function fieldErrors(issues: readonly Issue[], input?: unknown): FieldError[] {
  return issues.map((issue) => {
    const path = issue.path.map(String).join(".") || "(root)";
    const missing = input !== undefined && issue.code === "invalid_type" &&
      issue.path.length > 0 && valueAt(input, issue.path) === undefined;
    const message = missing
      ? `${path} is required${typeof issue.expected === "string" ? ` (${issue.expected})` : ""}`
      : issue.message;
    return { path, message };
  });
}

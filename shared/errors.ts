/** The AppError family and its mapping to RFC 9457 problem+json bodies. */
import type { z } from "zod";
import type { FieldErrorSchema, ProblemSchema } from "./openapi.ts";

/** One invalid field of a request, as listed in a validation problem. */
export type FieldError = z.infer<typeof FieldErrorSchema>;

/** An RFC 9457 problem details body. */
export type Problem = z.infer<typeof ProblemSchema>;

/** An error that the HTTP layer answers with its own status and problem type. */
export class AppError extends Error {
  readonly status: number;
  readonly type: string;
  readonly errors?: FieldError[];

  constructor(
    status: number,
    type: string,
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
  type: string,
  detail: string,
  errors?: FieldError[],
): Problem {
  return {
    type: `https://unread-counters.dev/problems/${type}`,
    title: titleFor(status),
    status,
    detail,
    ...(errors ? { errors } : {}),
  };
}

/** Turns zod issues into the `errors` list of a validation problem. */
export function fieldErrors(
  issues: readonly { path: readonly PropertyKey[]; message: string }[],
): FieldError[] {
  return issues.map((issue) => ({
    path: issue.path.map(String).join(".") || "(root)",
    message: issue.message,
  }));
}

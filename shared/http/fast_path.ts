/** A handler tried before the Hono app, for the hottest requests. */

/**
 * A handler tried before the Hono app, for the hottest requests: it answers a Response (or a promise
 * of one), or undefined (also from the promise) to leave the request to the app.
 */
export type FastPath = (req: Request) => Response | Promise<Response | undefined> | undefined;

/** `fetch` with `fast` tried first. */
export function withFastPath<A extends unknown[]>(
  fast: FastPath,
  fetch: (req: Request, ...rest: A) => Response | Promise<Response>,
): (req: Request, ...rest: A) => Response | Promise<Response> {
  return (req, ...rest) => {
    const answered = fast(req);
    if (answered === undefined) return fetch(req, ...rest);
    if (answered instanceof Response) return answered;
    return answered.then((res) => res ?? fetch(req, ...rest));
  };
}

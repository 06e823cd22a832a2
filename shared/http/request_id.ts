/** The X-Request-ID of a response: the client's own when well-formed, else a new one. */

/** What a request id taken from the client may contain (else a new one is made). */
const REQUEST_ID = /^[\w\-=]+$/;

/** The request id a response carries: the client's own when it is well-formed, else a new one. */
export function requestIdFor(given: string | null | undefined): string {
  return given && given.length <= 255 && REQUEST_ID.test(given) ? given : crypto.randomUUID();
}

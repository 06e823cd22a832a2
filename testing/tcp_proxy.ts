/** A TCP proxy for tests: cut() makes the target vanish for its clients, restore() brings it back. */

/** A running proxy on 127.0.0.1. */
export interface TcpProxy {
  /** The port clients connect to; the same after restore(). */
  readonly port: number;
  /** Stops listening and destroys every open connection, so clients see the server vanish. */
  cut(): Promise<void>;
  /** Listens again on the same port. */
  restore(): Promise<void>;
  /** Cuts for good. */
  close(): Promise<void>;
}

function closeQuietly(conn: Deno.Conn | Deno.Listener): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

// Copies bytes until either side ends or fails; manual loops survive a close from elsewhere.
async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    for (let n = await from.read(buf); n !== null; n = await from.read(buf)) {
      for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
    }
  } catch { /* a side was closed */ }
}

/** Starts a proxy forwarding to `target` on an ephemeral port. */
export function startTcpProxy(target: { hostname: string; port: number }): TcpProxy {
  const open = new Set<Deno.Conn>();
  let listener: Deno.Listener | null = null;
  let loop: Promise<void> = Promise.resolve();

  async function serve(client: Deno.Conn): Promise<void> {
    open.add(client);
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect({ hostname: target.hostname, port: target.port });
    } catch {
      open.delete(client);
      return closeQuietly(client);
    }
    // Cut while connecting: the client is gone, so is this connection.
    if (!open.has(client)) return closeQuietly(upstream);
    open.add(upstream);
    await Promise.race([pump(client, upstream), pump(upstream, client)]);
    for (const c of [client, upstream]) {
      open.delete(c);
      closeQuietly(c);
    }
  }

  async function accept(l: Deno.Listener): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await l.accept();
      } catch {
        return; // the listener was closed
      }
      void serve(conn);
    }
  }

  function listen(port: number): number {
    const l = Deno.listen({ hostname: "127.0.0.1", port });
    listener = l;
    loop = accept(l);
    return (l.addr as Deno.NetAddr).port;
  }

  async function cut(): Promise<void> {
    if (listener) closeQuietly(listener);
    listener = null;
    await loop;
    for (const c of [...open]) closeQuietly(c);
    open.clear();
  }

  const port = listen(0);
  return {
    port,
    cut,
    restore() {
      if (!listener) listen(port);
      return Promise.resolve();
    },
    close: cut,
  };
}

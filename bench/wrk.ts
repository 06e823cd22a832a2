/** Runs wrk (Debian's package) against a URL with a rotating set of bearer tokens and parses its report. */

/** What one wrk run measured. */
export interface WrkResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Non-2xx/3xx answers and socket errors; a valid run has none. */
  errors: number;
}

const SCRIPT = `
local tokens = {}
local file = os.getenv("WRK_TOKENS")
if file then for line in io.lines(file) do tokens[#tokens + 1] = line end end
local i = math.random(1, 1000)
request = function()
  if #tokens == 0 then return wrk.format("GET", wrk.path) end
  i = i + 1
  return wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1] })
end
`;

/** Runs `wrk -t2 -c<connections> -d<seconds>s --latency` and returns its figures. */
export async function runWrk(
  url: string,
  options: { connections: number; seconds: number; tokens?: string[] },
): Promise<WrkResult> {
  const dir = await Deno.makeTempDir({ prefix: "wrk-" });
  try {
    const script = `${dir}/tokens.lua`;
    await Deno.writeTextFile(script, SCRIPT);
    const env: Record<string, string> = {};
    if (options.tokens?.length) {
      env.WRK_TOKENS = `${dir}/tokens.txt`;
      await Deno.writeTextFile(env.WRK_TOKENS, options.tokens.join("\n") + "\n");
    }
    const out = await new Deno.Command("wrk", {
      args: [
        "-t2",
        `-c${options.connections}`,
        `-d${options.seconds}s`,
        "--latency",
        "--timeout",
        "5s",
        "-s",
        script,
        url,
      ],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    if (out.code !== 0) throw new Error(`wrk failed: ${new TextDecoder().decode(out.stderr)}`);
    return parseWrk(text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Parses wrk's text report. */
export function parseWrk(text: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  if (!rps) throw new Error(`no Requests/sec in wrk output:\n${text}`);
  const latency = (pct: string) => {
    const m = new RegExp(`^\\s+${pct}%\\s+([\\d.]+)(us|ms|s)`, "m").exec(text);
    if (!m) throw new Error(`no ${pct}% latency in wrk output`);
    const n = Number(m[1]);
    return m[2] === "us" ? n / 1000 : m[2] === "s" ? n * 1000 : n;
  };
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const socketErrors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
  return {
    requestsPerSecond: Number(rps[1]),
    p50Ms: latency("50"),
    p99Ms: latency("99"),
    errors: non2xx + socketErrors,
  };
}

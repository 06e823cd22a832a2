/** Runs wrk (Debian's package): reads with rotating bearer tokens, or sends; parses its report. */

/** What one wrk run measured. */
export interface WrkResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Non-2xx/3xx answers and socket errors; a valid run has none. */
  errors: number;
}

const READS = `
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

// Each line of WRK_SENDS is "<token> <path>", a POST of {"text":"bench"}. With WRK_DELAY_MS, each connection waits a random
// 0..2×that many milliseconds before its next send, so sends arrive spread out at a steady rate
// instead of in bursts.
const SENDS = `
local sends = {}
for line in io.lines(os.getenv("WRK_SENDS")) do
  local token, path = line:match("^(%S+) (%S+)$")
  sends[#sends + 1] = { token = token, path = path }
end
local meanDelay = tonumber(os.getenv("WRK_DELAY_MS") or "0")
math.randomseed(tonumber(tostring({}):match("0x(%x+)") or "1", 16) % 2147483647)
local i = math.random(1, #sends)
request = function()
  i = i + 1
  local s = sends[(i % #sends) + 1]
  return wrk.format("POST", s.path,
    { ["Authorization"] = "Bearer " .. s.token, ["Content-Type"] = "application/json" },
    '{"text":"bench"}')
end
if meanDelay > 0 then
  delay = function() return math.random(0, 2 * meanDelay) end
end
`;

/** Runs `wrk -t2 -c<connections> -d<seconds>s --latency` with GETs carrying rotating tokens. */
export function runWrk(
  url: string,
  options: { connections: number; seconds: number; tokens?: string[] },
): Promise<WrkResult> {
  const files: Record<string, string> = {};
  if (options.tokens?.length) files.WRK_TOKENS = options.tokens.join("\n") + "\n";
  return wrk(url, READS, files, options);
}

/**
 * Runs wrk with sends from rotating senders, each a POST of `{"text":"bench"}` to its path (a
 * dialog's or a group's send): as fast as the connections go, or, with `meanDelayMs`, each
 * connection pausing that long on average between sends.
 */
export function runWrkSends(
  url: string,
  options: {
    connections: number;
    seconds: number;
    senders: { token: string; path: string }[];
    meanDelayMs?: number;
  },
): Promise<WrkResult> {
  const files = {
    WRK_SENDS: options.senders.map((s) => `${s.token} ${s.path}`).join("\n") + "\n",
  };
  const env: Record<string, string> = {};
  if (options.meanDelayMs) env.WRK_DELAY_MS = String(Math.round(options.meanDelayMs));
  return wrk(url, SENDS, files, options, env);
}

async function wrk(
  url: string,
  script: string,
  files: Record<string, string>,
  options: { connections: number; seconds: number },
  extraEnv: Record<string, string> = {},
): Promise<WrkResult> {
  const dir = await Deno.makeTempDir({ prefix: "wrk-" });
  try {
    const env: Record<string, string> = { ...extraEnv };
    await Deno.writeTextFile(`${dir}/script.lua`, script);
    for (const [name, content] of Object.entries(files)) {
      env[name] = `${dir}/${name}.txt`;
      await Deno.writeTextFile(env[name], content);
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
        `${dir}/script.lua`,
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

/**
 * In-prompt directives that make the emulator misbehave on purpose, so e2e tests can drive every
 * failure path through the real app: `[emulator:hang]` (`[emulator:hangx1]`: the first request only),
 * `[emulator:latency=MS]`,
 * `[emulator:429]` / `[emulator:500]` / `[emulator:503]` (always), `[emulator:429x1]` /
 * `[emulator:500x2]` / `[emulator:503x1]` (the first N requests with that exact prompt),
 * `[emulator:block]`, `[emulator:text]`, `[emulator:retryafter=S]` (the retry hint of a 429/503,
 * default 1 s). They are stripped before the picture is painted.
 */
export type FaultStatus = 429 | 500 | 503;

export interface PromptDirectives {
  hang: boolean;
  /** With `[emulator:hangxN]`: only the first N requests with this exact prompt hang; undefined: all. */
  hangTimes: number | undefined;
  latencyMs: number | undefined;
  /** `times` undefined: fail every time; otherwise fail the first `times` requests carrying the prompt. */
  fail: { status: FaultStatus; times: number | undefined } | undefined;
  block: boolean;
  textOnly: boolean;
  /** Seconds a 429/503 answer asks the client to wait; undefined: the emulator's default. */
  retryAfterS: number | undefined;
}

export interface ParsedPrompt {
  directives: PromptDirectives;
  /** The prompt without directives: what the picture is painted from. */
  text: string;
  /** Directives the emulator does not know (answered with 400, so typos do not pass silently). */
  unknown: string[];
}

const DIRECTIVE = /\[emulator:([^\]]*)\]/gi;
const MAX_LATENCY_MS = 600_000;

export function parsePrompt(prompt: string): ParsedPrompt {
  const directives: PromptDirectives = { hang: false, hangTimes: undefined, latencyMs: undefined, fail: undefined, block: false, textOnly: false, retryAfterS: undefined };
  const unknown: string[] = [];
  for (const [whole, body] of prompt.matchAll(DIRECTIVE)) {
    const value = body.trim().toLowerCase();
    const latency = /^latency=(\d+)$/.exec(value);
    const fail = /^(429|500|503)(?:x(\d+))?$/.exec(value);
    const retryAfter = /^retryafter=(\d{1,4})$/.exec(value);
    const hangTimes = /^hangx(\d+)$/.exec(value);
    if (value === 'hang') directives.hang = true;
    else if (hangTimes) {
      directives.hang = true;
      directives.hangTimes = Number(hangTimes[1]);
    }
    else if (value === 'block') directives.block = true;
    else if (value === 'text') directives.textOnly = true;
    else if (latency && Number(latency[1]) <= MAX_LATENCY_MS) directives.latencyMs = Number(latency[1]);
    else if (retryAfter && Number(retryAfter[1]) >= 1) directives.retryAfterS = Number(retryAfter[1]);
    else if (fail) {
      directives.fail = {
        status: Number(fail[1]) as FaultStatus,
        times: fail[2] === undefined ? undefined : Number(fail[2]),
      };
    } else unknown.push(whole);
  }
  const text = prompt.replace(DIRECTIVE, ' ').replace(/\s+/g, ' ').trim();
  return { directives, text, unknown };
}

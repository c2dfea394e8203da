import { ConfigError, loadConfig } from './app-config';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('configuration errors a new user meets', () => {
  it('PORT=abc reports the value as given, once, not three contradictory range messages about null', () => {
    expect(problemsOf({ PORT: 'abc' })).toEqual(['PORT: PORT must be an integer number (got "abc")']);
    // A number of the right type reports the rule it breaks.
    expect(problemsOf({ PORT: '70000' })).toEqual(['PORT: PORT must not be greater than 65535 (got "70000")']);
  });

  it('never shows a secret, and shows URLs with their password redacted', () => {
    const problems = problemsOf({ PORT: 'x', DATABASE_URL: 'mysql://u:hunter2@db/x' });
    expect(problems.join('\n')).not.toContain('hunter2');
    expect(problems).toContainEqual(expect.stringMatching(/^DATABASE_URL: .*\(got "mysql:\/\/u:\*+@db\/x"\)$/));
  });
});

describe('NODE_ENV=production without a Gemini key', () => {
  it('refuses to start, naming the variables, instead of serving the emulator\'s synthetic images', () => {
    expect(problemsOf({ NODE_ENV: 'production' })).toEqual([expect.stringMatching(/^NODE_ENV=production without GEMINI_API_KEY or GEMINI_BASE_URL: .*set GEMINI_API_KEY/)]);
    expect(problemsOf({ NODE_ENV: 'production', GEMINI_API_KEY: '' })).toHaveLength(1);
  });

  it('starts with a key, or with an explicit GEMINI_BASE_URL (a proxy, a self-run emulator)', () => {
    expect(loadConfig({ NODE_ENV: 'production', GEMINI_API_KEY: 'k' }).gemini.apiKey).toBe('k');
    expect(loadConfig({ NODE_ENV: 'production', GEMINI_BASE_URL: 'http://gemini-proxy:8080' }).gemini.baseUrl).toBe('http://gemini-proxy:8080');
  });

  it('does not apply to ROLE=api, which never calls Gemini, nor outside production', () => {
    const api = { NODE_ENV: 'production', ROLE: 'api', REDIS_URL: 'redis://127.0.0.1:6379', DATABASE_URL: 'postgres://127.0.0.1/his' };
    expect(loadConfig(api).queue.role).toBe('api');
    expect(loadConfig({ NODE_ENV: 'development' }).gemini.apiKey).toBeUndefined();
    expect(loadConfig({}).gemini.apiKey).toBeUndefined();
  });
});

/**
 * Jest setup for tests that run `@google/genai` in-process (the Gemini integration test, e2e tests
 * through the real app with the emulator).
 *
 * On Node the SDK sends each request through undici's global dispatcher, which it looks up as
 * `globalThis[Symbol.for('undici.globalDispatcher.1')]`. Node's fetch stores it on the main
 * realm's global, but Jest runs tests in a vm context with a global of its own, so the SDK finds
 * nothing and every call fails with "Undici globalDispatcher is not available". This exposes the
 * main realm's dispatcher on the test global, so the SDK runs exactly as in production.
 */
import { runInThisContext } from 'node:vm';

const key = Symbol.for('undici.globalDispatcher.1');
const mainRealm = runInThisContext('globalThis') as Record<symbol, unknown>;

if (mainRealm !== globalThis && !(key in globalThis)) {
  new Headers(); // Node creates its global dispatcher lazily, on first use of its fetch classes
  Object.defineProperty(globalThis, key, {
    configurable: true,
    get: () => mainRealm[key],
    set: (dispatcher: unknown) => {
      mainRealm[key] = dispatcher;
    },
  });
}

/**
 * Diagnostic Jest test environment, opt-in: `JEST_OPEN_HANDLES_REPORT=<file> npm run test:jest -- ...`
 * (jest.config.js selects it). Jest only says "A worker process has failed to exit gracefully" and
 * cannot name the test file; this can. It tracks every handle and timer the tests create (with the
 * stack of its creation site and the test file that was running) and appends JSON lines to <file>:
 *  - `{ kind: 'file', testPath, open }` after each test file's own teardown (afterAll hooks done) and
 *    a grace period: what that file left behind;
 *  - `{ kind: 'exit', open }` when Jest tells the worker to exit: what still holds it.
 * A listed handle is not always one that keeps the loop alive (a never-started timer handle, e.g. an
 * un-enabled monitorEventLoopDelay histogram, is listed but harmless); the stack tells which it is.
 */
const { TestEnvironment } = require('jest-environment-node');
const { createHook } = require('node:async_hooks');
const { appendFileSync } = require('node:fs');

const REPORT = process.env.JEST_OPEN_HANDLES_REPORT;
const GRACE_MS = Number(process.env.JEST_OPEN_HANDLES_GRACE_MS ?? 1000);
// Short-lived or never-blocking resources: tracking them would only cost time.
const IGNORED = new Set(['PROMISE', 'TickObject', 'Immediate', 'Microtask', 'STREAM_END_OF_STREAM', 'RANDOMBYTESREQUEST', 'PBKDF2REQUEST', 'SIGNREQUEST', 'HASHREQUEST', 'DNSCHANNEL', 'ZLIB', 'WRITEWRAP', 'SHUTDOWNWRAP']);
// Native requests that keep the loop alive while pending (they have no hasRef()).
const NATIVE_REQUESTS = new Set(['FSREQCALLBACK', 'FSREQPROMISE', 'GETADDRINFOREQWRAP', 'GETNAMEINFOREQWRAP', 'TCPCONNECTWRAP', 'PIPECONNECTWRAP', 'QUERYWRAP', 'WORKER']);
const CHILD_MESSAGE_END = 2; // jest-worker's "exit now" message

const state = globalThis[Symbol.for('open-handles-environment')] ?? (globalThis[Symbol.for('open-handles-environment')] = { live: new Map(), current: '(between files)' });

if (!state.hook) {
  state.hook = createHook({
    init(asyncId, type, _trigger, resource) {
      if (IGNORED.has(type)) return;
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 40;
      const stack = new Error().stack.split('\n').slice(2).filter((l) => !/node:internal\/async_hooks|node_modules\/(jest-|@jest\/)/.test(l)).join('\n');
      Error.stackTraceLimit = limit;
      state.live.set(asyncId, { type, file: state.current, resource: new WeakRef(resource), stack });
    },
    destroy(asyncId) {
      state.live.delete(asyncId);
    },
  });
  state.hook.enable();
  const onMessage = (message) => {
    if (!Array.isArray(message) || message[0] !== CHILD_MESSAGE_END) return;
    process.removeListener('message', onMessage); // a 'message' listener keeps the IPC channel referenced
    const end = Date.now();
    write({ kind: 'end', open: open(() => true), activeResources: process.getActiveResourcesInfo(), unreferenced: unreferenced() });
    // 'exit' fires once the event loop is empty; a worker that is force-exited without it was held by
    // something active, one that gets here late was slow to tear its state down.
    process.once('exit', () => write({ kind: 'exited', msAfterEnd: Date.now() - end, memory: process.memoryUsage() }));
    // When the process has terminated (a zombie until Jest reaps it) and when Jest reaped it: Jest
    // force-exits a worker it has not seen exit 500 ms after asking it to.
    const watch = `s=$(date +%s%3N); while [ -e /proc/${process.pid} ] && ! grep -q '^[0-9]* ([^)]*) Z' /proc/${process.pid}/stat 2>/dev/null; do sleep 0.01; done; z=$(date +%s%3N); while [ -e /proc/${process.pid} ]; do sleep 0.01; done; g=$(date +%s%3N); echo "{\\"pid\\":${process.pid},\\"kind\\":\\"terminated\\",\\"msAfterEnd\\":$((z - s)),\\"reapedMsAfterEnd\\":$((g - s))}" >> "${REPORT}"`;
    require('node:child_process').spawn('sh', ['-c', watch], { detached: true, stdio: 'ignore' }).unref();
    setTimeout(() => write({ kind: 'exit', open: open(() => true), activeResources: process.getActiveResourcesInfo() }), 300).unref();
  };
  process.on('message', onMessage);
}

function open(filter) {
  const found = [];
  for (const [id, { type, file, resource, stack }] of state.live) {
    const r = resource.deref();
    if (!r || !filter(file)) continue;
    // Plain JS AsyncResources (on-finished, Piscina, ...) often never emit destroy; they hold nothing.
    if (typeof r.hasRef !== 'function' && !NATIVE_REQUESTS.has(type)) continue;
    if (typeof r.hasRef === 'function' && !r.hasRef()) continue;
    if (type === 'Timeout' && (r._destroyed || r._idleTimeout === -1)) continue;
    found.push({ id, type, file, refed: typeof r.hasRef === 'function' ? true : undefined, ...endpoints(r), stack });
  }
  return found;
}

/** Unreferenced handles still open (type and file): they do not hold the loop but may slow the exit (a worker thread is joined). */
function unreferenced() {
  const found = [];
  for (const { type, file, resource, stack } of state.live.values()) {
    const r = resource.deref();
    if (r && typeof r.hasRef === 'function' && !r.hasRef()) found.push({ type, file, stack: stack.split('\n').slice(0, 12).join('\n') });
  }
  return found;
}

/** Local and remote address of a TCP handle, to tell which server a leftover socket belongs to. */
function endpoints(handle) {
  if (typeof handle.getsockname !== 'function') return {};
  const local = {};
  const remote = {};
  handle.getsockname(local);
  if (typeof handle.getpeername === 'function') handle.getpeername(remote);
  return { local: `${local.address}:${local.port}`, remote: remote.port ? `${remote.address}:${remote.port}` : undefined };
}

function write(entry) {
  appendFileSync(REPORT, JSON.stringify({ pid: process.pid, ...entry }) + '\n');
}

class OpenHandlesEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    this.testPath = context.testPath;
  }

  async setup() {
    await super.setup();
    state.current = this.testPath;
  }

  async teardown() {
    await super.teardown();
    // Let close() calls that were started but not awaited finish, as they would before the worker exits.
    await new Promise((resolve) => setTimeout(resolve, GRACE_MS));
    state.current = '(between files)';
    write({ kind: 'file', testPath: this.testPath, open: open((file) => file === this.testPath), activeResources: process.getActiveResourcesInfo() });
  }
}

module.exports = OpenHandlesEnvironment;

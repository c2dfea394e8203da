/**
 * One Jest run for everything: unit specs beside the source (src/**\/*.spec.ts) and
 * integration / e2e suites under test/ (real SDK, real S3-protocol server, real Prometheus,
 * real browser). TypeScript is compiled by SWC (decorator metadata on), type checking is
 * `npm run typecheck`, which `npm test` runs first.
 */
const swc = [
  '@swc/jest',
  {
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
      target: 'es2023',
      keepClassNames: true,
    },
    module: { type: 'commonjs' },
    sourceMaps: 'inline',
  },
];
// ESM-only packages that Jest's CommonJS runtime must see transformed.
const esmPackages = ['kysely'];
const common = {
  // JEST_OPEN_HANDLES_REPORT=<file>: a diagnostic environment that appends, per test file, the handles
  // and timers it left open (with their creation stacks) to <file> (see test/support/open-handles-environment.js).
  testEnvironment: process.env.JEST_OPEN_HANDLES_REPORT ? '<rootDir>/test/support/open-handles-environment.js' : 'node',
  transform: { '^.+\\.(t|j|mj)s$': swc },
  transformIgnorePatterns: [`/node_modules/(?!(${esmPackages.join('|')})/)`],
  setupFiles: ['reflect-metadata', '<rootDir>/test/support/emulator-undici-bridge.ts'],
  moduleFileExtensions: ['ts', 'js', 'mjs', 'json'],
};
module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/src/**/*.spec.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/**/*.int-spec.ts', '<rootDir>/test/**/*.e2e-spec.ts'],
      slowTestThreshold: 30,
      // These start services, instances and nginx; on a busy 2-core box (CI beside other work) that alone
      // can take a minute. No test exercises this limit: it only ends a test that really hangs.
      testTimeout: 180000,
    },
  ],
  maxWorkers: 2,
  // How long Jest waits for a worker to exit once all tests ran before it force-exits it ("A worker
  // process has failed to exit gracefully"). Jest's 500 ms is shorter than a worker that left nothing
  // open needs here: it reaches 'exit' within ~100 ms, but then frees a heap of ~450 MB, which took
  // 0.5-2.3 s on a busy 2-core box. A worker that a leaked handle keeps alive never exits, so it is
  // still reported. To find such a handle: JEST_OPEN_HANDLES_REPORT (test/support/open-handles-environment.js).
  workerGracefulExitTimeout: 10000,
  testTimeout: 60000,
};

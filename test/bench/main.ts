/**
 * `npm run bench`: runs every `*.bench.js` beside this file (compiled from test/bench/*.bench.ts),
 * one after another so they do not compete for the cores, and prints one JSON summary as the last
 * line: `{ "<name>": <what its run() returned>, … }`. Arguments pick benches by name
 * (`main.js palette database`); none runs them all. Arguments starting with `--` are left to the
 * benches themselves (`main.js hostile --service-dir=../old`). Progress goes to stderr.
 * `--help` lists the benches, with the flags of those that export a `usage` text.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

interface BenchModule {
  run(): Promise<Record<string, unknown>>;
  /** Optional: what the bench measures and its flags, for `--help`. */
  usage?: string;
}

function load(name: string): Partial<BenchModule> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(join(__dirname, `${name}.bench.js`)) as Partial<BenchModule>;
}

async function main(): Promise<void> {
  const all = readdirSync(__dirname)
    .filter((f) => f.endsWith('.bench.js'))
    .map((f) => f.slice(0, -'.bench.js'.length))
    .sort();
  if (process.argv.includes('--help')) {
    console.log('usage: npm run bench -- [NAME …] [--flags of those benches]   (no NAME: every bench, one after another)\n');
    for (const name of all) console.log(load(name).usage ?? name);
    return;
  }
  const wanted = new Set(process.argv.slice(2).filter((arg) => !arg.startsWith('--')));
  const names = all.filter((name) => wanted.size === 0 || wanted.has(name));
  if (names.length === 0) throw new Error(`No benchmark matches ${[...wanted].join(', ') || '*.bench.js'} in ${__dirname}`);
  const summary: Record<string, unknown> = {};
  for (const name of names) {
    process.stderr.write(`[bench] ${name}…\n`);
    const started = Date.now();
    const bench = load(name);
    if (typeof bench.run !== 'function') throw new Error(`${name}.bench.js does not export run()`);
    summary[name] = await bench.run();
    process.stderr.write(`[bench] ${name} done in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  }
  console.log(JSON.stringify(summary));
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);

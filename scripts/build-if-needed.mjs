// Builds dist/ with `nest build` when it is missing or older than any file under src/.
// Used by `npm start` and `npm run emulator`, so a fresh clone needs only `npm ci && npm start`.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const marker = join(root, 'dist', 'main.js');

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const mtime = entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs;
    if (mtime > newest) newest = mtime;
  }
  return newest;
}

const sourcesNewest = Math.max(newestMtime(join(root, 'src')), statSync(join(root, 'package.json')).mtimeMs);
if (!existsSync(marker) || statSync(marker).mtimeMs < sourcesNewest) {
  console.error('[build] dist/ is missing or stale: running nest build');
  execFileSync(join(root, 'node_modules', '.bin', 'nest'), ['build'], { cwd: root, stdio: 'inherit' });
}

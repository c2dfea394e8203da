import { createHash } from 'node:crypto';

/** One configured API key and the name its data is stored under. */
export interface ApiKeyEntry {
  /** The owner name: everything created with this key belongs to it (stored, never the key itself). */
  readonly name: string;
  readonly key: string;
}

/** Names are stored with every record and appear in logs: short, plain, unambiguous. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** The owner name of a bare key (no `name:`): a short hash of the key, stable across restarts. */
export function bareKeyName(key: string): string {
  return `key-${createHash('sha256').update(key).digest('hex').slice(0, 12)}`;
}

/**
 * Parses `API_KEYS` entries: `name:key`, or a bare `key` named by a short hash of itself. The name is
 * everything before the first `:`. Returns the entries and every problem found (duplicate names or
 * keys, bad names, empty keys or keys with spaces), so configuration errors are reported together.
 */
export function parseApiKeys(entries: readonly string[]): { keys: ApiKeyEntry[]; problems: string[] } {
  const keys: ApiKeyEntry[] = [];
  const problems: string[] = [];
  const names = new Set<string>();
  const secrets = new Set<string>();
  entries.forEach((entry, i) => {
    const colon = entry.indexOf(':');
    const name = colon >= 0 ? entry.slice(0, colon).trim() : bareKeyName(entry);
    const key = colon >= 0 ? entry.slice(colon + 1).trim() : entry;
    const where = `API_KEYS entry ${i + 1}`;
    if (!NAME_PATTERN.test(name)) {
      problems.push(`${where}: the name must be 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit (got ${JSON.stringify(name)})`);
      return;
    }
    if (key.length === 0 || /\s/.test(key)) {
      problems.push(`${where} (${name}): the key must be non-empty, without spaces`);
      return;
    }
    if (names.has(name)) problems.push(`${where}: the name ${name} is used twice`);
    if (secrets.has(key)) problems.push(`${where} (${name}): the same key is configured twice`);
    names.add(name);
    secrets.add(key);
    keys.push({ name, key });
  });
  return { keys, problems };
}

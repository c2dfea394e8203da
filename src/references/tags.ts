import { MAX_TAG_LENGTH, MAX_TAGS } from '../common/reference.model';

/** Any C0/C1 control character (tags and titles are one line). */
export const CONTROL_CHARS = /[\u0000-\u001F\u007F-\u009F]/;

/**
 * The `tags` field (`warm, Studio ,product`) → `['warm', 'studio', 'product']`: split at commas,
 * trimmed, empty ones dropped, NFC-normalised and lower-cased (a tag names a group; `Warm` and
 * `warm` are one group, and search ignores case anyway), repeats dropped (first kept). Returns the
 * problem instead when there are more than MAX_TAGS, one is longer than MAX_TAG_LENGTH characters,
 * or one holds a control character or a lone surrogate.
 */
export function parseTags(raw: string | undefined): { tags: string[] } | { problem: string } {
  if (raw === undefined) return { tags: [] };
  const tags: string[] = [];
  for (const part of raw.split(',')) {
    const tag = part.trim().normalize('NFC').toLowerCase();
    if (tag.length === 0) continue;
    if (!tag.isWellFormed()) return { problem: 'tags must be well-formed Unicode text (a tag contains a lone surrogate)' };
    if (CONTROL_CHARS.test(tag)) return { problem: 'tags must not contain control characters' };
    if ([...tag].length > MAX_TAG_LENGTH) return { problem: `each tag must be at most ${MAX_TAG_LENGTH} characters` };
    if (!tags.includes(tag)) tags.push(tag);
  }
  if (tags.length > MAX_TAGS) return { problem: `at most ${MAX_TAGS} tags` };
  return { tags };
}

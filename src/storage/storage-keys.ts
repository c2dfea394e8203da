import { StorageError } from './storage.errors';

const KEY_CHARS = /^[A-Za-z0-9/_.-]+$/;
const ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
/** S3's own limit on key length (bytes; keys here are ASCII). */
const MAX_KEY_LENGTH = 1024;

/**
 * Rejects keys that could escape the storage root or that S3 and a file system would treat
 * differently: only `[A-Za-z0-9/_.-]`, relative, no empty segments, no `..`, and no segment
 * starting with `.` (the local driver reserves dot-names for its temp and sidecar files).
 */
export function assertValidKey(key: unknown): asserts key is string {
  const problem = keyProblem(key);
  if (problem) throw new StorageError('INVALID_KEY', `invalid storage key ${JSON.stringify(String(key).slice(0, 100))}: ${problem}`);
}

function keyProblem(key: unknown): string | null {
  if (typeof key !== 'string' || key.length === 0) return 'empty';
  if (key.length > MAX_KEY_LENGTH) return `longer than ${MAX_KEY_LENGTH} characters`;
  if (!KEY_CHARS.test(key)) return 'only A-Z a-z 0-9 / _ . - are allowed';
  if (key.startsWith('/')) return 'absolute';
  if (key.includes('..')) return 'contains ".."';
  const segments = key.split('/');
  if (segments.some((s) => s === '')) return 'empty path segment';
  if (segments.some((s) => s.startsWith('.'))) return 'a path segment starts with "."';
  return null;
}

/**
 * `images/YYYY/MM/DD/<generationId>/`, dated in UTC so every instance agrees: every image of one
 * generation is stored under it (`<index>.<ext>`), so they can be listed and removed together.
 */
export function generationImagePrefix(generationId: string, createdAt: Date): string {
  if (!ID_PATTERN.test(generationId)) throw new StorageError('INVALID_KEY', 'generation id must match [A-Za-z0-9_-]{1,128}');
  if (Number.isNaN(createdAt.getTime())) throw new StorageError('INVALID_KEY', 'createdAt is not a valid date');
  const [yyyy, mm, dd] = createdAt.toISOString().slice(0, 10).split('-');
  return `images/${yyyy}/${mm}/${dd}/${generationId}/`;
}

/**
 * `references/YYYY/MM/DD/<referenceId>.<ext>`, dated in UTC: one object per reference image, apart
 * from generation images (the start-up sweep of generations never lists it).
 */
export function referenceImageKey(referenceId: string, mimeType: string, createdAt: Date): string {
  if (!ID_PATTERN.test(referenceId)) throw new StorageError('INVALID_KEY', 'reference id must match [A-Za-z0-9_-]{1,128}');
  if (Number.isNaN(createdAt.getTime())) throw new StorageError('INVALID_KEY', 'createdAt is not a valid date');
  const [yyyy, mm, dd] = createdAt.toISOString().slice(0, 10).split('-');
  return `references/${yyyy}/${mm}/${dd}/${referenceId}.${extensionFor(mimeType)}`;
}

/**
 * Where readiness writes (and at once deletes) its small probe object: beside the images, so a
 * read-only or full image folder shows. No generation prefix can start like this.
 */
export const PROBE_KEY_PREFIX = 'images/_probe/';

const TYPE_BY_EXTENSION: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  avif: 'image/avif',
  tif: 'image/tiff',
  tiff: 'image/tiff',
  heic: 'image/heic',
  heif: 'image/heif',
  bmp: 'image/bmp',
};

const EXTENSION_BY_TYPE: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
  'image/gif': 'gif',
  'image/avif': 'avif',
  'image/tiff': 'tiff',
  'image/heic': 'heic',
  'image/heif': 'heif',
  'image/bmp': 'bmp',
};

/** File extension for a MIME type (`image/png` → `png`); unknown types → `bin`. */
export function extensionFor(mimeType: string): string {
  const essence = mimeType.split(';')[0].trim().toLowerCase();
  return EXTENSION_BY_TYPE[essence] ?? 'bin';
}

/** The content type a key's extension implies, or `application/octet-stream`. */
export function contentTypeForKey(key: string): string {
  const dot = key.lastIndexOf('.');
  const slash = key.lastIndexOf('/');
  const ext = dot > slash ? key.slice(dot + 1).toLowerCase() : '';
  return TYPE_BY_EXTENSION[ext] ?? 'application/octet-stream';
}

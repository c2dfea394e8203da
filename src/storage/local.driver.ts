import { randomUUID } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { FileHandle, mkdir, open, readdir, readFile, rename, rm, rmdir, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { assertValidKey, contentTypeForKey } from './storage-keys';
import type { StorageDriver, StoredObject } from './storage.driver';
import { StorageError } from './storage.errors';

/**
 * Objects as files under one root folder, async fs only.
 *
 * Writes go to a dot-named temp file in the target folder and are renamed into place (same file
 * system, so the rename is atomic): a reader or a crash never sees half an object under its key.
 * The content type comes from the key's extension; only when the caller's type differs is it kept
 * in a dot-named sidecar file, so the common case costs one file per object.
 */
export class LocalDriver implements StorageDriver {
  readonly kind = 'local' as const;
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  async put(key: string, body: Buffer, contentType: string): Promise<void> {
    const path = this.pathFor(key);
    await mkdir(dirname(path), { recursive: true });
    const sidecar = sidecarPath(path);
    if (contentType === contentTypeForKey(key)) await rm(sidecar, { force: true });
    else await writeAtomically(sidecar, Buffer.from(contentType, 'utf8'));
    await writeAtomically(path, body);
  }

  async get(key: string): Promise<StoredObject> {
    const path = this.pathFor(key);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      throw notFoundOr(error, key);
    }
    try {
      // stat the open handle, not the path: the size then matches the bytes this handle streams
      // even if a concurrent put renames a new file over the key.
      const stats = await handle.stat();
      if (!stats.isFile()) throw new StorageError('NOT_FOUND', `no object under key ${key}`);
      const contentType = await this.readContentType(path, key);
      return { body: handle.createReadStream(), contentType, contentLength: stats.size };
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathFor(key);
    await unlinkIfPresent(path);
    await unlinkIfPresent(sidecarPath(path));
  }

  async presignGetUrl(): Promise<string | null> {
    return null;
  }

  async deletePrefix(prefix: string, { limit, signal }: { limit: number; signal?: AbortSignal }): Promise<{ deleted: number; truncated: boolean }> {
    if (!prefix.endsWith('/')) throw new StorageError('INVALID_KEY', `a prefix ends with "/": ${prefix}`);
    const dir = this.pathFor(prefix.slice(0, -1));
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return { deleted: 0, truncated: false };
      throw error;
    }
    let deleted = 0;
    for (const entry of entries.slice(0, limit)) {
      signal?.throwIfAborted();
      if (!entry.isFile()) continue;
      await unlinkIfPresent(join(dir, entry.name));
      // Dot-files are an object's sidecar or an interrupted write's temp file, not objects.
      if (!entry.name.startsWith('.')) deleted++;
    }
    const truncated = entries.length > limit;
    // Only succeeds when the folder is empty now.
    if (!truncated) await rmdir(dir).catch(() => undefined);
    return { deleted, truncated };
  }

  async close(): Promise<void> {}

  private pathFor(key: string): string {
    assertValidKey(key);
    const path = resolve(this.root, key);
    // Defence in depth: assertValidKey already rules out every way out of the root.
    if (!path.startsWith(this.root + sep)) throw new StorageError('INVALID_KEY', `storage key escapes the root: ${key}`);
    return path;
  }

  private async readContentType(path: string, key: string): Promise<string> {
    try {
      return (await readFile(sidecarPath(path), 'utf8')).trim() || contentTypeForKey(key);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return contentTypeForKey(key);
      throw error;
    }
  }
}

function sidecarPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.content-type`);
}

async function writeAtomically(path: string, data: Buffer): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${randomUUID()}.tmp`);
  let handle: FileHandle | undefined;
  try {
    handle = await open(temp, 'wx', 0o644);
    await handle.writeFile(data);
    // Flush the data before the rename publishes it, so a power cut cannot leave an empty file under the key.
    await handle.datasync();
    await handle.close();
    handle = undefined;
    await rename(temp, path);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await rm(temp, { force: true }).catch(() => undefined);
    throw error;
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

function notFoundOr(error: unknown, key: string): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  // ENOTDIR: a parent segment of the key is a file, so the key cannot exist either.
  if (code === 'ENOENT' || code === 'ENOTDIR') return new StorageError('NOT_FOUND', `no object under key ${key}`, { cause: error });
  return error;
}

import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { LocalDriver } from './local.driver';
import { StorageError } from './storage.errors';

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Every file under `dir`, relative, dot-files included. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

async function rejection(promise: Promise<unknown>): Promise<StorageError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StorageError);
  return error as StorageError;
}

describe('LocalDriver', () => {
  let base: string;
  let root: string;
  let driver: LocalDriver;
  const key = 'images/2026/11/24/g1/0.png';

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'local-driver-'));
    root = join(base, 'images');
    driver = new LocalDriver(root);
  });

  afterEach(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('round-trips bytes, type and length, and writes the file under the root', async () => {
    const body = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 3, 255]);
    await driver.put(key, body, 'image/png');

    expect(await readFile(join(root, key))).toEqual(body);
    const object = await driver.get(key);
    expect(object.contentType).toBe('image/png');
    expect(object.contentLength).toBe(body.length);
    expect(await readAll(object.body)).toEqual(body);
    // The extension already says image/png: no sidecar, no temp file.
    expect(await listFiles(root)).toEqual([key]);
  });

  it('keeps a content type the extension does not imply, and forgets it when overwritten', async () => {
    await driver.put('misc/blob.bin', Buffer.from('x'), 'image/x-custom');
    const custom = await driver.get('misc/blob.bin');
    custom.body.destroy();
    expect(custom.contentType).toBe('image/x-custom');

    await driver.put('misc/blob.bin', Buffer.from('y'), 'application/octet-stream');
    const object = await driver.get('misc/blob.bin');
    expect(object.contentType).toBe('application/octet-stream');
    expect(await readAll(object.body)).toEqual(Buffer.from('y'));
    expect(await listFiles(root)).toEqual(['misc/blob.bin']);
  });

  it('overwrites atomically: concurrent writers leave one whole version and no temp files', async () => {
    const versions = Array.from({ length: 8 }, (_, i) => Buffer.alloc(256 * 1024, i + 1));
    await Promise.all(versions.map((v) => driver.put(key, v, 'image/png')));

    const stored = await readFile(join(root, key));
    expect(versions.some((v) => v.equals(stored))).toBe(true);
    expect(await listFiles(root)).toEqual([key]);
  });

  it('removes its temp file when the final rename fails', async () => {
    // A directory sitting where the file should go makes rename() fail after the temp file is written.
    await mkdir(join(root, key), { recursive: true });
    await expect(driver.put(key, Buffer.alloc(1024, 7), 'image/png')).rejects.toMatchObject({ code: expect.stringMatching(/^E/) });
    expect(await listFiles(root)).toEqual([]);
  });

  it('deletes, after which the key is NOT_FOUND; deleting a missing key succeeds', async () => {
    await driver.put('misc/a.webp', Buffer.from('a'), 'text/plain');
    await driver.delete('misc/a.webp');

    const error = await rejection(driver.get('misc/a.webp'));
    expect(error.code).toBe('NOT_FOUND');
    await expect(driver.delete('misc/a.webp')).resolves.toBeUndefined();
    // The content-type sidecar went with it.
    expect(await listFiles(root)).toEqual([]);
  });

  it('answers NOT_FOUND for a missing key, a folder, or a path through a file', async () => {
    await driver.put('a/file.png', Buffer.from('x'), 'image/png');
    for (const missing of ['never/written.png', 'a', 'a/file.png/inside.png']) {
      expect((await rejection(driver.get(missing))).code).toBe('NOT_FOUND');
    }
  });

  it('rejects keys that could leave the root or clash with its own files, touching nothing', async () => {
    await writeFile(join(base, 'secret.txt'), 'top secret');
    const bad = ['../secret.txt', 'images/../../secret.txt', '/etc/passwd', 'a\\..\\b', 'a//b', 'a/./b', '.hidden', 'a/.tmp', 'a b', 'a/ü.png', ''];
    for (const k of bad) {
      expect((await rejection(driver.put(k, Buffer.from('evil'), 'image/png'))).code).toBe('INVALID_KEY');
      expect((await rejection(driver.get(k))).code).toBe('INVALID_KEY');
      expect((await rejection(driver.delete(k))).code).toBe('INVALID_KEY');
    }
    expect(await readFile(join(base, 'secret.txt'), 'utf8')).toBe('top secret');
    expect(await listFiles(base)).toEqual(['secret.txt']);
  });

  it('deletePrefix() removes one generation’s objects, sidecars and temp files, and its folder, nothing else', async () => {
    const g1 = 'images/2026/11/24/g1/';
    await driver.put(`${g1}0.png`, Buffer.from('a'), 'image/png');
    await driver.put(`${g1}1.png`, Buffer.from('b'), 'image/x-custom'); // with a content-type sidecar
    await writeFile(join(root, g1, '.2.png.5c1e.tmp'), 'half a write');
    await driver.put('images/2026/11/24/g10/0.png', Buffer.from('c'), 'image/png'); // shares a name prefix, not the folder
    await driver.put('images/2026/11/24/g2/0.png', Buffer.from('d'), 'image/png');

    await expect(driver.deletePrefix(g1, { limit: 100 })).resolves.toEqual({ deleted: 2, truncated: false });

    expect(await listFiles(root)).toEqual(['images/2026/11/24/g10/0.png', 'images/2026/11/24/g2/0.png']);
    expect(await readdir(join(root, 'images/2026/11/24'))).toEqual(expect.not.arrayContaining(['g1']));
    // Nothing there (any more): nothing to do.
    await expect(driver.deletePrefix(g1, { limit: 100 })).resolves.toEqual({ deleted: 0, truncated: false });
  });

  it('deletePrefix() stops at its limit and says so, keeping the folder', async () => {
    for (let i = 0; i < 3; i++) await driver.put(`images/2026/11/24/g1/${i}.png`, Buffer.from('x'), 'image/png');
    await expect(driver.deletePrefix('images/2026/11/24/g1/', { limit: 2 })).resolves.toEqual({ deleted: 2, truncated: true });
    expect(await listFiles(root)).toHaveLength(1);
  });

  it('deletePrefix() refuses a prefix that is not a folder of keys, or that leaves the root', async () => {
    await writeFile(join(base, 'secret.txt'), 'top secret');
    for (const bad of ['images/2026', '../', 'images/../../', '']) {
      expect((await rejection(driver.deletePrefix(bad, { limit: 10 }))).code).toBe('INVALID_KEY');
    }
    expect(await readFile(join(base, 'secret.txt'), 'utf8')).toBe('top secret');
  });

  it('deletePrefix() honours an aborted signal', async () => {
    await driver.put(key, Buffer.from('x'), 'image/png');
    const controller = new AbortController();
    controller.abort(new Error('deadline'));
    await expect(driver.deletePrefix('images/2026/11/24/g1/', { limit: 10, signal: controller.signal })).rejects.toThrow('deadline');
    expect(await listFiles(root)).toEqual([key]);
  });

  it('has no presigned URLs', async () => {
    await expect(driver.presignGetUrl()).resolves.toBeNull();
  });
});

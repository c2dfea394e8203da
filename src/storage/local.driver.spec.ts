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

  it('check() creates the root, proves it writable, and leaves nothing behind', async () => {
    await driver.check(new AbortController().signal);
    expect(await readdir(root)).toEqual([]);
  });

  it('check() fails when the root cannot be a folder', async () => {
    await writeFile(root, 'a file where the folder should be');
    await expect(driver.check(new AbortController().signal)).rejects.toMatchObject({ code: expect.stringMatching(/^E/) });
  });

  it('check() honours an aborted signal', async () => {
    const controller = new AbortController();
    controller.abort(new Error('deadline'));
    await expect(driver.check(controller.signal)).rejects.toThrow('deadline');
  });

  it('has no presigned URLs', async () => {
    await expect(driver.presignGetUrl()).resolves.toBeNull();
  });
});

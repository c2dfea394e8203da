/// <reference types="multer" />
import { randomUUID } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Request } from 'express';
import type { StorageEngine } from 'multer';
import { removeFile, uploadContextOf } from './upload-context';

/**
 * A multer storage engine that streams each file part into a new file of `dir` (mode 0600, a random
 * name), so an upload never sits in memory whole. The file belongs to the request's UploadContext,
 * which removes it once the response is over, however the request ended; multer's own removal on a
 * failed upload (`_removeFile`) only does so earlier.
 */
export class TempFileStorage implements StorageEngine {
  constructor(private readonly dir: string) {}

  _handleFile(req: Request, file: Express.Multer.File, callback: (error?: unknown, info?: Partial<Express.Multer.File>) => void): void {
    this.store(req, file).then(
      (info) => callback(null, info),
      (error: unknown) => callback(error),
    );
  }

  _removeFile(req: Request, file: Express.Multer.File, callback: (error: Error | null) => void): void {
    if (!file.path) return callback(null);
    uploadContextOf(req)?.forget(file.path);
    removeFile(file.path).then(
      () => callback(null),
      (error: Error) => callback(error),
    );
  }

  private async store(req: Request, file: Express.Multer.File): Promise<Partial<Express.Multer.File>> {
    const upload = uploadContextOf(req);
    if (!upload || upload.closed) {
      file.stream.resume();
      throw new Error(upload ? 'The request is over' : 'No upload context: use ImageUploadInterceptor');
    }
    const path = join(this.dir, `upload-${randomUUID()}`);
    // Created before it is handed over, so that no removal can run before the file exists.
    const handle = await open(path, 'wx', 0o600);
    if (!upload.adopt(path)) {
      await handle.close();
      await removeFile(path);
      file.stream.resume();
      throw new Error('The request is over');
    }
    // multer removes a file that already has a path if the upload fails meanwhile.
    file.path = path;
    const out = handle.createWriteStream();
    upload.writing(out);
    await pipeline(file.stream, out);
    return { path, size: out.bytesWritten };
  }
}

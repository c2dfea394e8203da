import { unlink } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { Logger } from '@nestjs/common';

const logger = new Logger('Uploads');

const CONTEXT = Symbol('uploadContext');

/** The client left before its answer was sent: the reason an upload's signal aborts with. */
export class ClientClosedError extends DOMException {
  constructor() {
    super('The client closed the request', 'AbortError');
  }
}

/**
 * One upload's life: the temporary files written for it, the streams writing them, its budget
 * reservation, and a signal that aborts when the client goes away before its answer. `dispose`
 * (run once the response is over, however it ended) removes the files and gives the bytes back.
 */
export class UploadContext {
  private readonly controller = new AbortController();
  private readonly files = new Set<string>();
  private readonly streams = new Set<Writable>();
  private disposed = false;

  constructor(private readonly release: () => void) {}

  /** Aborts (with a ClientClosedError) when the client goes away before its answer is sent. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get closed(): boolean {
    return this.disposed;
  }

  /** Takes charge of a file just created. False once disposed: then the caller removes it itself. */
  adopt(path: string): boolean {
    if (this.disposed) return false;
    this.files.add(path);
    return true;
  }

  /** A stream writing one of the adopted files, destroyed if the upload ends before it does. */
  writing(stream: Writable): void {
    if (this.disposed) stream.destroy();
    else this.streams.add(stream);
    stream.once('close', () => this.streams.delete(stream));
  }

  forget(path: string): void {
    this.files.delete(path);
  }

  /** Stops the writes, removes the files, gives the reservation back; aborts the signal if `clientGone`. */
  async dispose(clientGone: boolean): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    if (clientGone) this.controller.abort(new ClientClosedError());
    for (const stream of this.streams) stream.destroy();
    try {
      const results = await Promise.allSettled([...this.files].map((path) => removeFile(path)));
      for (const r of results) if (r.status === 'rejected') logger.error(`Could not remove an upload's temporary file: ${(r.reason as Error)?.message}`);
    } finally {
      this.files.clear();
      this.release();
    }
  }
}

/** Deletes a file; one that is already gone is fine. */
export async function removeFile(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

export function attachUploadContext(req: object, context: UploadContext): void {
  (req as { [CONTEXT]?: UploadContext })[CONTEXT] = context;
}

export function uploadContextOf(req: object): UploadContext | undefined {
  return (req as { [CONTEXT]?: UploadContext })[CONTEXT];
}

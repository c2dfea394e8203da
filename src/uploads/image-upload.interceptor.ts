/// <reference types="multer" />
import {
  BadRequestException,
  CallHandler,
  createParamDecorator,
  ExecutionContext,
  HttpStatus,
  Injectable,
  NestInterceptor,
  PayloadTooLargeException,
  UnsupportedMediaTypeException,
} from '@nestjs/common';
import { FileInterceptor } from '@nestjs/platform-express';
import { finished } from 'node:stream';
import type { Request, Response } from 'express';
import type { Observable } from 'rxjs';
import { AppError } from '../common/app-error';
import { LoadShedder } from '../overload/load-shedder';
import { attachUploadContext, UploadContext, uploadContextOf } from './upload-context';
import { UploadsService } from './uploads.service';

/** The multipart field that carries the image. */
export const IMAGE_FIELD = 'image';
/** Largest image file accepted (the contract's 20 MB). */
export const MAX_IMAGE_BYTES = 20 * 1024 * 1024;
/**
 * Room for the other parts and the multipart framing. A body declaring more than the image limit
 * plus this cannot hold an acceptable upload: refused before a byte of it is read.
 */
export const MULTIPART_OVERHEAD_BYTES = 1024 * 1024;
/** Text fields: a few short ones (a palette size; a title ≤ 200 and 20 tags, in UTF-8). */
const LIMITS = { fileSize: MAX_IMAGE_BYTES, files: 1, fields: 8, fieldSize: 4096, parts: 9 };

/** HTTP status nginx made the convention for "the client closed the request"; only logs and metrics see it. */
export const CLIENT_CLOSED_REQUEST = 499;

export function clientClosedRequest(): AppError {
  return new AppError(CLIENT_CLOSED_REQUEST as HttpStatus, 'CLIENT_CLOSED_REQUEST', 'The client closed the request before its answer');
}

function payloadTooLarge(): AppError {
  return new AppError(HttpStatus.PAYLOAD_TOO_LARGE, 'PAYLOAD_TOO_LARGE', `The image must be at most ${MAX_IMAGE_BYTES / 1024 / 1024} MB`);
}

/** The image part of a request that went through ImageUploadInterceptor. */
export interface UploadedImage {
  /** A temporary file holding the bytes as sent; removed once the response is over. */
  path: string;
  size: number;
  originalName: string;
  /** As the client declared it: not to be trusted. */
  mimeType: string;
  /** Aborts when the client goes away before its answer: pass it to the work done for the upload. */
  signal: AbortSignal;
}

/** The `image` part (see UploadedImage), or undefined when the request had none. */
export const UploadedImage = createParamDecorator((_: unknown, ctx: ExecutionContext): UploadedImage | undefined => {
  const req = ctx.switchToHttp().getRequest<Request>();
  const upload = uploadContextOf(req);
  const file = req.file;
  if (!upload || !file?.path) return undefined;
  return { path: file.path, size: file.size, originalName: file.originalname, mimeType: file.mimetype, signal: upload.signal };
});

/**
 * The multipart upload of one image in the field `image`, for any route (`@UseInterceptors(
 * ImageUploadInterceptor)` + `@UploadedImage()`), with the contract's answers for bad uploads:
 *
 * - admission by bytes: the declared Content-Length (the most a body may be when absent) is reserved
 *   from UPLOAD_MAX_INFLIGHT_MB until the response is sent; no room → `503 UPLOADS_BUSY` +
 *   `Retry-After`, before the body is read. A declared body that cannot hold an acceptable image →
 *   `413 PAYLOAD_TOO_LARGE` at once;
 * - the file streams to a temporary file (UPLOAD_TMP_DIR), never held in memory whole, and is removed
 *   when the response is over, whether it succeeded, failed or the client went away;
 * - the client going away before its answer aborts `UploadedImage.signal`;
 * - multer's errors become `413 PAYLOAD_TOO_LARGE` (> 20 MB), `400 INVALID_MULTIPART`,
 *   `415 UNSUPPORTED_MEDIA_TYPE` (multipart, but not form-data).
 */
@Injectable()
export class ImageUploadInterceptor implements NestInterceptor {
  private readonly multer: NestInterceptor;

  constructor(
    private readonly uploads: UploadsService,
    private readonly shedder: LoadShedder,
  ) {
    const Multer = FileInterceptor(IMAGE_FIELD, { storage: uploads.storage, limits: LIMITS });
    this.multer = new Multer();
  }

  async intercept(context: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    const http = context.switchToHttp();
    const req = http.getRequest<Request>();
    const res = http.getResponse<Response>();
    // Not multipart: multer leaves it alone and the route finds no image.
    if (!req.is('multipart')) return this.multer.intercept(context, next);

    // A saturated instance refuses before reading a byte of the body.
    this.shedder.assertAccepting('upload');
    const declared = declaredLength(req);
    if (declared !== undefined && declared > MAX_IMAGE_BYTES + MULTIPART_OVERHEAD_BYTES) throw payloadTooLarge();
    const release = this.uploads.admit(declared ?? MAX_IMAGE_BYTES + MULTIPART_OVERHEAD_BYTES);
    if (!release) {
      throw new AppError(HttpStatus.SERVICE_UNAVAILABLE, 'UPLOADS_BUSY', 'Too many uploads are in progress; retry later', {
        'Retry-After': String(this.uploads.retryAfterSeconds()),
      });
    }
    const upload = new UploadContext(release);
    attachUploadContext(req, upload);
    // Called once the response is over, sent or not (also if it already is); unsent means the client went away.
    finished(res, () => void upload.dispose(!res.writableFinished));

    try {
      return await this.multer.intercept(context, next);
    } catch (error) {
      if (upload.signal.aborted || req.socket.destroyed) throw clientClosedRequest();
      throw toAppError(error);
    }
  }
}

function declaredLength(req: Request): number | undefined {
  const header = req.headers['content-length'];
  if (header === undefined || !/^\d+$/.test(header)) return undefined;
  return Number(header);
}

function toAppError(error: unknown): unknown {
  if (error instanceof PayloadTooLargeException) return payloadTooLarge();
  if (error instanceof UnsupportedMediaTypeException) {
    return new AppError(HttpStatus.UNSUPPORTED_MEDIA_TYPE, 'UNSUPPORTED_MEDIA_TYPE', 'Send the image as multipart/form-data');
  }
  if (error instanceof BadRequestException) {
    return new AppError(HttpStatus.BAD_REQUEST, 'INVALID_MULTIPART', `Invalid multipart body: ${error.message}`);
  }
  return error;
}

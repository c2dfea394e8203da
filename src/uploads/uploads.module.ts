import { OverloadModule } from '../overload/overload.module';
import { Module } from '@nestjs/common';
import { ImageUploadInterceptor } from './image-upload.interceptor';
import { UploadsService } from './uploads.service';

/**
 * Multipart image uploads for any route: import this module, then `@UseInterceptors(
 * ImageUploadInterceptor)` and take the file with `@UploadedImage()`.
 */
@Module({ imports: [OverloadModule], providers: [UploadsService, ImageUploadInterceptor], exports: [UploadsService, ImageUploadInterceptor] })
export class UploadsModule {}

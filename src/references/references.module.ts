import { Module } from '@nestjs/common';
import { PaletteModule } from '../palette/palette.module';
import { StorageModule } from '../storage/storage.module';
import { UploadsModule } from '../uploads/uploads.module';
import { ReferencesController } from './references.controller';
import { ReferencesService } from './references.service';
import { StorageSweeper } from './storage-sweeper';

/** The reference library: `/api/v1/references` (upload, list, get, image, delete) and the storage sweep. */
@Module({
  imports: [PaletteModule, StorageModule, UploadsModule],
  controllers: [ReferencesController],
  providers: [ReferencesService, StorageSweeper],
  exports: [ReferencesService],
})
export class ReferencesModule {}

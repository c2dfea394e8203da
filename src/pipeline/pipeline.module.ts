import { Module } from '@nestjs/common';
import { GeminiModule } from '../gemini/gemini.module';
import { PaletteModule } from '../palette/palette.module';
import { StorageModule } from '../storage/storage.module';
import { PendingFinalWrites } from './final-writes';
import { GenerationEvents } from './generation-events';
import { OrphanSweep } from './orphan-sweep';
import { PipelineService } from './pipeline.service';

/** Orchestrates the adapters; the database module is global. */
@Module({
  imports: [GeminiModule, StorageModule, PaletteModule],
  providers: [PipelineService, GenerationEvents, PendingFinalWrites, OrphanSweep],
  exports: [PipelineService, GenerationEvents, StorageModule, PaletteModule],
})
export class PipelineModule {}

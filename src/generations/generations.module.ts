import { Module } from '@nestjs/common';
import { PipelineModule } from '../pipeline/pipeline.module';
import { GenerationStreamService } from './generation-stream.service';
import { GenerationsController } from './generations.controller';

@Module({ imports: [PipelineModule], controllers: [GenerationsController], providers: [GenerationStreamService] })
export class GenerationsModule {}

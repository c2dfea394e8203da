import { Module } from '@nestjs/common';
import { PipelineModule } from '../pipeline/pipeline.module';
import { GenerationsController } from './generations.controller';

@Module({ imports: [PipelineModule], controllers: [GenerationsController] })
export class GenerationsModule {}

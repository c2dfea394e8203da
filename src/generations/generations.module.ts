import { Module } from '@nestjs/common';
import { GenerationStreamService } from './generation-stream.service';
import { GenerationsController } from './generations.controller';

/** The HTTP face of generations; the pipeline (global) does the work. */
@Module({ controllers: [GenerationsController], providers: [GenerationStreamService] })
export class GenerationsModule {}

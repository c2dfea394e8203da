import { Module } from '@nestjs/common';
import { PaletteService } from './palette.service';

/** The palette engine: a worker-thread pool running sharp + node-vibrant. */
@Module({ providers: [PaletteService], exports: [PaletteService] })
export class PaletteModule {}

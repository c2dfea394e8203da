import { Global, Module } from '@nestjs/common';
import { PaletteModule } from '../palette/palette.module';
import { LoadShedder } from './load-shedder';

/** Admission by measured saturation (LoadShedder), for the routes that take new work. */
@Global()
@Module({ imports: [PaletteModule], providers: [LoadShedder], exports: [LoadShedder] })
export class OverloadModule {}

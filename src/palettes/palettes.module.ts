import { Module } from '@nestjs/common';
import { PaletteModule } from '../palette/palette.module';
import { UploadsModule } from '../uploads/uploads.module';
import { PalettesController } from './palettes.controller';

/** The HTTP face of the palette engine: `POST /api/v1/palettes`. */
@Module({ imports: [PaletteModule, UploadsModule], controllers: [PalettesController] })
export class PalettesModule {}

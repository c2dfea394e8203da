import { Injectable } from '@nestjs/common';
import sharp from 'sharp';
import type { Generation } from '../common/generation.model';
import type { Reference } from '../common/reference.model';
import { ReferencesRepository } from '../database/references.repository';
import { StorageService } from '../storage/storage.service';

/**
 * The longest side of a reference as sent to Gemini. Gemini bills an image by its size in tiles (258
 * tokens per 768² tile) and takes at most 20 MB of inline data per request: 1024 px keeps each
 * reference at a few tiles and well under 1 MB, while keeping what a reference is for (its tones,
 * composition, product shape) plainly visible.
 */
export const MODEL_IMAGE_SIDE = 1024;
/** Colours of the palette hint, over all references. */
const HINT_COLORS = 8;

export interface ModelImage {
  data: Buffer;
  mimeType: 'image/jpeg' | 'image/png';
}

/**
 * What a generation's references become for Gemini: each image read from storage, oriented, shrunk to
 * fit MODEL_IMAGE_SIDE² and re-encoded (JPEG, PNG when it has transparency; sharp works off the event
 * loop), and for `paletteHint` the prompt with their palettes' hex codes appended. References deleted
 * since the generation was accepted are left out.
 */
@Injectable()
export class ReferenceImages {
  constructor(
    private readonly references: ReferencesRepository,
    private readonly storage: StorageService,
  ) {}

  async load(generation: Pick<Generation, 'references' | 'owner'>): Promise<Reference[]> {
    return generation.references.length > 0 ? this.references.findOwned(generation.references, generation.owner) : [];
  }

  async forModel(reference: Reference): Promise<ModelImage> {
    const object = await this.storage.open(reference.storageKey);
    const chunks: Buffer[] = [];
    for await (const chunk of object.body) chunks.push(chunk as Buffer);
    const image = sharp(Buffer.concat(chunks), { limitInputPixels: 100_000_000 })
      .rotate()
      .resize(MODEL_IMAGE_SIDE, MODEL_IMAGE_SIDE, { fit: 'inside', withoutEnlargement: true });
    const { hasAlpha } = await image.metadata();
    return hasAlpha
      ? { data: await image.png().toBuffer(), mimeType: 'image/png' }
      : { data: await image.jpeg({ quality: 85 }).toBuffer(), mimeType: 'image/jpeg' };
  }
}

/** The prompt with the references' palettes appended as hex codes (most frequent first, no repeats). */
export function promptWithPaletteHint(prompt: string, references: Pick<Reference, 'palette'>[]): string {
  const colors = references
    .flatMap((r) => r.palette)
    .sort((a, b) => b.proportion - a.proportion)
    .map((c) => c.hex.toLowerCase())
    .filter((hex, i, all) => all.indexOf(hex) === i)
    .slice(0, HINT_COLORS);
  return colors.length > 0 ? `${prompt}\n\nUse this colour palette: ${colors.join(', ')}.` : prompt;
}

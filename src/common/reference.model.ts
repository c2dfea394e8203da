import type { PaletteColor } from './generation.model';

/**
 * A reference image of the library: uploaded by an API key (its owner), with an optional title and
 * tags, its palette, and the image itself in storage. Plain types only.
 */
export interface Reference {
  id: string;
  /** The API key name that uploaded it; null when uploaded with API keys off. Never sent to clients. */
  owner: string | null;
  title: string | null;
  tags: string[];
  /** Storage key (driver-relative). Not exposed over HTTP. */
  storageKey: string;
  mimeType: string;
  width: number;
  height: number;
  bytes: number;
  /** Most frequent first; proportions sum to 1. */
  palette: PaletteColor[];
  createdAt: Date;
}

/** Largest title (characters) and tag list. */
export const MAX_TITLE_LENGTH = 200;
export const MAX_TAGS = 20;
/** Longest tag (characters, after trimming). */
export const MAX_TAG_LENGTH = 50;
/** Colours in a reference's palette. */
export const REFERENCE_PALETTE_SIZE = 5;

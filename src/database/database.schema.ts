import type { Generated } from 'kysely';
import type { AspectRatio, GenerationErrorCode, GenerationStage, GenerationStatus } from '../common/generation.model';

/**
 * The tables as Kysely sees them. Times are Unix milliseconds (INTEGER): one numeric
 * representation everywhere, so `created_at` compares and sorts exactly as the cursor encodes it.
 * Structured fields that are always read whole (timings, images) are JSON text.
 */
export interface GenerationsTable {
  id: string;
  /** API key name of the creator; null = created with API keys off. */
  owner: string | null;
  /** Who asked (the principal's client), for per-client admission; null on rows from before 0003. */
  client: string | null;
  /** JSON array of the reference ids the generation uses (0005). */
  reference_ids: Generated<string>;
  /** 1 when the references' palettes were appended to the prompt (0005). */
  palette_hint: Generated<number>;
  status: GenerationStatus;
  stage: GenerationStage;
  prompt: string;
  model: string;
  aspect_ratio: AspectRatio;
  count: number;
  palette_size: number;
  created_at: number;
  started_at: number | null;
  completed_at: number | null;
  /** JSON of `GenerationTimings`. */
  timings: string;
  /** JSON array of `GenerationImage` (storage key and palette included). */
  images: string;
  input_tokens: number;
  output_tokens: number;
  error_code: GenerationErrorCode | null;
  error_message: string | null;
  updated_at: number;
}

/** One finished image of a generation (see migration 0003). */
export interface GenerationImagesTable {
  generation_id: string;
  idx: number;
  status: 'succeeded' | 'failed';
  storage_key: string | null;
  mime_type: string | null;
  width: number | null;
  height: number | null;
  bytes: number | null;
  /** JSON array of `PaletteColor`. */
  palette: string | null;
  error_code: GenerationErrorCode | null;
  error_message: string | null;
  gemini_ms: number;
  upload_ms: number;
  palette_ms: number;
  input_tokens: number;
  output_tokens: number;
  created_at: number;
}

/** A reference image of the library (see migration 0004). */
export interface ReferenceImagesTable {
  id: string;
  owner: string | null;
  title: string | null;
  /** JSON array of strings. */
  tags: string;
  storage_key: string;
  mime_type: string;
  width: number;
  height: number;
  bytes: number;
  /** JSON array of `PaletteColor`. */
  palette: string;
  created_at: number;
}

/**
 * One searchable item (a generation or a reference) of one owner. Its text (`body`) is indexed by
 * FTS5 (`search_text`, SQLite) or a generated `tsvector` column with a GIN index (PostgreSQL).
 */
export interface SearchItemsTable {
  item_key: Generated<number>;
  kind: 'generation' | 'reference';
  item_id: string;
  owner: string | null;
  /** `ownerKindCode(owner, kind)`: the owner/kind coordinate of its colour points. */
  code: number;
  created_at: number;
  body: string;
}

/** One distinct palette of one owner and kind (see migration 0004): items with the same palette share it. */
export interface SearchPalettesTable {
  palette_key: Generated<number>;
  code: number;
  /** The palette's points, rounded, as text: equal palettes have equal signatures. */
  signature: string;
}

/**
 * One colour of a palette in OKLab with its share; indexed as a point by the R*Tree
 * `search_color_index` (SQLite) or a GiST index on the generated `point cube` column (PostgreSQL).
 */
export interface SearchColorsTable {
  palette_key: number;
  color_idx: number;
  l: number;
  a: number;
  b: number;
  share: number;
  code: number;
}

/** Which palette each image of a searchable item has. */
export interface SearchItemPalettesTable {
  item_key: number;
  image_idx: number;
  palette_key: number;
}

/**
 * Stored objects to delete once `due_at` has passed: a deleted reference's image whose deletion
 * failed, or an upload's image not yet recorded (removed in the transaction that records it).
 */
export interface StorageSweepTable {
  key: string;
  due_at: number;
  attempts: number;
  reason: string;
}

export interface DatabaseSchema {
  generations: GenerationsTable;
  generation_images: GenerationImagesTable;
  reference_images: ReferenceImagesTable;
  search_items: SearchItemsTable;
  search_palettes: SearchPalettesTable;
  search_colors: SearchColorsTable;
  search_item_palettes: SearchItemPalettesTable;
  storage_sweep: StorageSweepTable;
}

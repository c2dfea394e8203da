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

export interface DatabaseSchema {
  generations: GenerationsTable;
  generation_images: GenerationImagesTable;
}

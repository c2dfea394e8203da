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

export interface DatabaseSchema {
  generations: GenerationsTable;
}

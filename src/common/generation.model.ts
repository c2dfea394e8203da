/**
 * The domain model of a generation, shared by the database, the pipeline and the HTTP face.
 * Plain types only: no Nest, no SDKs.
 */
export const ASPECT_RATIOS = ['1:1', '3:4', '4:3', '9:16', '16:9'] as const;
export type AspectRatio = (typeof ASPECT_RATIOS)[number];

export const GENERATION_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;
export type GenerationStatus = (typeof GENERATION_STATUSES)[number];
export const FINAL_STATUSES: readonly GenerationStatus[] = ['succeeded', 'failed', 'canceled'];

export const GENERATION_STAGES = ['queued', 'gemini', 'upload', 'palette', 'done'] as const;
export type GenerationStage = (typeof GENERATION_STAGES)[number];

/** Error codes a failed generation carries (`error.code`). */
export const GENERATION_ERROR_CODES = [
  'GEMINI_TIMEOUT',
  'GEMINI_RATE_LIMITED',
  'GEMINI_BLOCKED',
  'GEMINI_NO_IMAGE',
  'GEMINI_ERROR',
  'STORAGE_ERROR',
  'PALETTE_ERROR',
  'INTERRUPTED',
  'CANCELED',
] as const;
export type GenerationErrorCode = (typeof GENERATION_ERROR_CODES)[number];

export interface GenerationError {
  code: GenerationErrorCode;
  message: string;
}

export interface PaletteColor {
  hex: string;
  rgb: [number, number, number];
  /** Share of the image's (opaque) pixels, 0..1; a palette's proportions sum to 1. */
  proportion: number;
}

export interface GenerationImage {
  index: number;
  /** Storage key (driver-relative). Not exposed over HTTP. */
  key: string;
  mimeType: string;
  width: number;
  height: number;
  bytes: number;
  palette: PaletteColor[];
}

export interface GenerationTimings {
  queueMs: number;
  geminiMs: number;
  uploadMs: number;
  paletteMs: number;
  totalMs: number;
}

export interface GenerationUsage {
  inputTokens: number;
  outputTokens: number;
}

export interface Generation {
  id: string;
  /** The API key name that created it; null when created with API keys off. Never sent to clients. */
  owner: string | null;
  status: GenerationStatus;
  stage: GenerationStage;
  prompt: string;
  model: string;
  aspectRatio: AspectRatio;
  count: number;
  paletteSize: number;
  createdAt: Date;
  startedAt: Date | null;
  completedAt: Date | null;
  timings: GenerationTimings;
  images: GenerationImage[];
  usage: GenerationUsage;
  error: GenerationError | null;
  /** Ids of the caller's references sent to Gemini with the prompt, in order (at most 3). */
  references: string[];
  /** True when the references' palettes were appended to the prompt as hex codes. */
  paletteHint: boolean;
}

export function emptyTimings(): GenerationTimings {
  return { queueMs: 0, geminiMs: 0, uploadMs: 0, paletteMs: 0, totalMs: 0 };
}

export function isFinal(status: GenerationStatus): boolean {
  return FINAL_STATUSES.includes(status);
}

/** What a client asks for; everything else of a new generation follows from it. */
export interface GenerationInput {
  prompt: string;
  aspectRatio: AspectRatio;
  count: number;
  paletteSize: number;
  references?: string[];
  paletteHint?: boolean;
}

/** References one generation may use. */
export const MAX_GENERATION_REFERENCES = 3;

/** A freshly accepted generation: `queued`, nothing measured or produced yet. */
export function newQueuedGeneration(
  id: string,
  model: string,
  input: GenerationInput,
  { owner = null, createdAt = new Date() }: { owner?: string | null; createdAt?: Date } = {},
): Generation {
  return {
    id,
    owner,
    status: 'queued',
    stage: 'queued',
    ...input,
    references: input.references ?? [],
    paletteHint: input.paletteHint ?? false,
    model,
    createdAt,
    startedAt: null,
    completedAt: null,
    timings: emptyTimings(),
    images: [],
    usage: { inputTokens: 0, outputTokens: 0 },
    error: null,
  };
}

import type { Generation } from '../common/generation.model';
import type { GenerationPatch, ImageRecord } from '../database/generations.repository';

/**
 * The final state of a generation from the records of all its images (one per index): succeeded
 * with the images that worked (partial success keeps them), else failed with the first image's error.
 * Stage times are the slowest image's, usage the sum. Pure: the same records give the same state, so
 * two workers that both finish "the last image" compute the same answer.
 */
export function finalPatch(generation: Pick<Generation, 'createdAt' | 'timings' | 'startedAt'>, records: ImageRecord[], completedAt: Date): GenerationPatch {
  const byIndex = [...records].sort((a, b) => a.index - b.index);
  const images = byIndex.flatMap((r) => (r.image ? [r.image] : []));
  const max = (k: keyof ImageRecord['ms']) => Math.round(Math.max(0, ...byIndex.map((r) => r.ms[k])));
  const timings = {
    queueMs: generation.timings.queueMs,
    geminiMs: max('gemini'),
    uploadMs: max('upload'),
    paletteMs: max('palette'),
    totalMs: Math.max(0, completedAt.getTime() - generation.createdAt.getTime()),
  };
  const usage = byIndex.reduce(
    (sum, r) => ({ inputTokens: sum.inputTokens + r.usage.inputTokens, outputTokens: sum.outputTokens + r.usage.outputTokens }),
    { inputTokens: 0, outputTokens: 0 },
  );
  const common = { timings, usage, completedAt, startedAt: generation.startedAt };
  if (images.length > 0) return { ...common, status: 'succeeded', stage: 'done', images, error: null };
  const error = byIndex.find((r) => r.error)?.error ?? { code: 'GEMINI_ERROR' as const, message: 'No image was produced' };
  return { ...common, status: 'failed', images: [], error };
}

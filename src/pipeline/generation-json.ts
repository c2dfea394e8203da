import type { Generation } from '../common/generation.model';

/** A `Generation` back from JSON (a message, a job's data): its dates revived. */
export function parseGenerationJson(value: unknown): Generation {
  const g = value as Record<string, unknown>;
  if (!g || typeof g.id !== 'string' || typeof g.createdAt !== 'string') throw new TypeError('not a generation');
  const date = (v: unknown) => (typeof v === 'string' ? new Date(v) : null);
  return { ...(g as unknown as Generation), createdAt: new Date(g.createdAt), startedAt: date(g.startedAt), completedAt: date(g.completedAt) };
}

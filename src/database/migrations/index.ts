import type { Migration, MigrationProvider } from 'kysely/migration';
import { createGenerations } from './0001-create-generations';
import { addGenerationOwner } from './0002-generation-owner';
import { addGenerationImages } from './0003-generation-images';
import { addReferencesAndSearch } from './0004-references-and-search';
import { addGenerationReferences } from './0005-generation-references';

/**
 * Every migration, in code rather than found by globbing a folder, so the same list runs from
 * dist/, from ts sources under Jest, and from a bundle. Kysely applies them in name order: keep the
 * numeric prefix and never rename or edit one that has shipped; add a new entry instead.
 */
export const MIGRATIONS: Readonly<Record<string, Migration>> = {
  '0001_create_generations': createGenerations,
  '0002_generation_owner': addGenerationOwner,
  '0003_generation_images': addGenerationImages,
  '0004_references_and_search': addReferencesAndSearch,
  '0005_generation_references': addGenerationReferences,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => ({ ...MIGRATIONS }),
};

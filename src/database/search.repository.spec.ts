import { Kysely } from 'kysely';
import { createDatabase } from './database';
import type { DatabaseSchema } from './database.schema';
import { NodeSqliteDialect, openSqlite } from './node-sqlite.dialect';
import { describeReferencesAndSearch } from './search.repository.cases';

// The shared cases on a fresh in-memory SQLite database per test; the same list runs against
// PostgreSQL in test/integration/search-postgres.int-spec.ts.
describeReferencesAndSearch('SQLite', {
  open: () => createDatabase(':memory:'),
  openUnmigrated: async () => new Kysely<DatabaseSchema>({ dialect: new NodeSqliteDialect(openSqlite(':memory:')) }),
});

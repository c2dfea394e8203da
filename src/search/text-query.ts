/**
 * The text query language of `GET /api/v1/search?q=`: the syntax of PostgreSQL's
 * `websearch_to_tsquery`, parsed here once and compiled for each database — to an FTS5 expression
 * (SQLite) and to a `tsquery` built from `phraseto_tsquery('english', …)` parts (PostgreSQL) — so
 * both read a query the same way:
 *
 * - words: all must match (`red apple` = red AND apple), stemmed (`apples` finds `apple`);
 * - `"a phrase"`: those words next to each other, in that order;
 * - `or` between terms: either side (AND binds tighter: `a b or c` = (a AND b) OR c);
 * - `-word` / `-"a phrase"`: must not match;
 * - case and punctuation do not matter; English stop words (PostgreSQL's list) are ignored as
 *   single words, as `to_tsvector('english', …)` drops them from the documents.
 *
 * Terms are sequences of letters, digits and marks; anything else separates them (`red-apple` needs
 * both words). The FTS5 expression quotes every term and PostgreSQL gets them as parameters, so
 * nothing a client sends is read as query syntax. Stemming differs slightly (FTS5's Porter stemmer,
 * PostgreSQL's Snowball English), as does diacritic folding (FTS5 folds `café` to `cafe`).
 */

/** PostgreSQL 15's `english.stop`: words `to_tsvector('english', …)` does not index. */
export const ENGLISH_STOP_WORDS: ReadonlySet<string> = new Set(
  (
    'i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it its itself ' +
    'they them their theirs themselves what which who whom this that these those am is are was were be been being have has had ' +
    'having do does did doing a an the and but if or because as until while of at by for with about against between into through ' +
    'during before after above below to from up down in out on off over under again further then once here there when where why ' +
    'how all any both each few more most other some such no nor not only own same so than too very s t can will just don should now'
  ).split(' '),
);

/** Longest `q` accepted (characters). */
export const MAX_QUERY_LENGTH = 500;
/** Terms kept from one query; the rest are ignored. */
export const MAX_QUERY_TERMS = 32;

/** A word or a phrase: its terms, lower-cased, in order. */
export type Phrase = readonly string[];

/** Alternatives (OR) of conjunctions (AND), each with its exclusions. */
export interface TextQuery {
  groups: { include: Phrase[]; exclude: Phrase[] }[];
}

const TERM = /[\p{L}\p{N}\p{M}]+/gu;

function termsOf(text: string): string[] {
  return (text.normalize('NFC').toLowerCase().match(TERM) ?? []).slice(0, MAX_QUERY_TERMS);
}

/** Parses websearch syntax; groups without anything to match are dropped. */
export function parseTextQuery(q: string): TextQuery {
  const groups: TextQuery['groups'] = [{ include: [], exclude: [] }];
  let terms = 0;
  // Tokens: an optionally negated quoted phrase (closing quote optional), or a run of non-space characters.
  const token = /(-?)"([^"]*)"?|(\S+)/g;
  for (const match of q.matchAll(token)) {
    if (terms >= MAX_QUERY_TERMS) break;
    const [, minus, quoted, bare] = match;
    const current = groups[groups.length - 1];
    if (quoted !== undefined) {
      // Inside quotes stop words stay (they hold positions in the documents too), as in PostgreSQL.
      const phrase = termsOf(quoted);
      // Stop words alone match nothing in PostgreSQL (they are not indexed): skip them here too.
      if (phrase.every((w) => ENGLISH_STOP_WORDS.has(w))) continue;
      terms += phrase.length;
      (minus ? current.exclude : current.include).push(phrase);
      continue;
    }
    if (bare.toLowerCase() === 'or') {
      if (current.include.length > 0 || current.exclude.length > 0) groups.push({ include: [], exclude: [] });
      continue;
    }
    const negated = bare.startsWith('-');
    const words = termsOf(negated ? bare.slice(1) : bare);
    if (negated) {
      // `-rock-n-roll` excludes that phrase.
      if (words.length === 0) continue;
      terms += words.length;
      current.exclude.push(words);
      continue;
    }
    // `red-apple`, `don't`: each word that is not a stop word must match.
    for (const word of words.filter((w) => !ENGLISH_STOP_WORDS.has(w))) {
      terms++;
      current.include.push([word]);
    }
  }
  // A group of exclusions alone would match almost everything: PostgreSQL allows it, search here does not.
  return { groups: groups.filter((g) => g.include.length > 0) };
}

const quote = (phrase: Phrase) => `"${phrase.join(' ')}"`;

/** The FTS5 MATCH expression for `query`, or null when it has nothing to match. */
export function toFts5(query: TextQuery): string | null {
  const parts = query.groups.map((g) => {
    let expr = g.include.map(quote).join(' AND ');
    if (g.include.length > 1) expr = `(${expr})`;
    for (const phrase of g.exclude) expr = `${expr} NOT ${quote(phrase)}`;
    return `(${expr})`;
  });
  return parts.length > 0 ? parts.join(' OR ') : null;
}

/** True when the query has something to match (else search by text finds nothing). */
export function hasTerms(query: TextQuery): boolean {
  return query.groups.length > 0;
}

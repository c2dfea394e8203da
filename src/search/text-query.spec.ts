import { parseTextQuery, toFts5 } from './text-query';

describe('text queries (websearch syntax)', () => {
  const fts = (q: string) => toFts5(parseTextQuery(q));

  it('words are ANDed, lower-cased, and stop words dropped', () => {
    expect(fts('Red APPLE')).toBe('(("red" AND "apple"))');
    expect(fts('the apple of my eye')).toBe('(("apple" AND "eye"))');
    expect(fts('the of and')).toBeNull();
    expect(fts('')).toBeNull();
  });

  it('or separates alternatives; -word and -"phrase" exclude; quotes make phrases (stop words kept inside)', () => {
    expect(fts('red apple or lighthouse')).toBe('(("red" AND "apple")) OR ("lighthouse")');
    expect(fts('apple -red -"green tea"')).toBe('("apple" NOT "red" NOT "green tea")');
    expect(fts('"lighthouse at dusk" sea')).toBe('(("lighthouse at dusk" AND "sea"))');
    expect(fts('"unclosed phrase')).toBe('("unclosed phrase")');
    // A leading or trailing or, and exclusions alone, match nothing by themselves.
    expect(fts('or apple or')).toBe('("apple")');
    expect(fts('-apple')).toBeNull();
  });

  it('never passes query syntax through: every term is quoted and made of letters, digits and marks', () => {
    expect(fts('NEAR(a b) apple* "x" AND y:z ^start')).toBe('(("near" AND "b" AND "apple" AND "x" AND "y" AND "z" AND "start"))');
    expect(fts('café 東京 naïve')).toBe('(("café" AND "東京" AND "naïve"))');
    expect(fts('red-apple')).toBe('(("red" AND "apple"))');
  });

  it('keeps at most 32 terms', () => {
    const q = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
    expect(parseTextQuery(q).groups[0].include).toHaveLength(32);
  });
});

import { generationIdTimestamp, isGenerationId, newGenerationId } from './ids';

describe('generation ids', () => {
  it('are canonical lowercase UUIDv7 with the RFC 9562 variant', () => {
    for (let i = 0; i < 200; i++) {
      const id = newGenerationId();
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(isGenerationId(id)).toBe(true);
    }
  });

  it('embed the creation time in their first 48 bits', () => {
    const at = Date.UTC(2031, 4, 6, 7, 8, 9, 123);
    const id = newGenerationId(at);
    expect(generationIdTimestamp(id)).toBe(at);
    expect(id.slice(0, 13)).toBe(`${at.toString(16).padStart(12, '0').slice(0, 8)}-${at.toString(16).padStart(12, '0').slice(8)}`);
  });

  it('strictly increase within one millisecond and across a clock step back', () => {
    const base = Date.UTC(2032, 0, 1);
    const ids = [
      ...Array.from({ length: 5000 }, () => newGenerationId(base)),
      ...Array.from({ length: 10 }, () => newGenerationId(base - 60_000)),
      ...Array.from({ length: 10 }, () => newGenerationId(base + 1)),
    ];
    for (let i = 1; i < ids.length; i++) {
      expect(ids[i] > ids[i - 1]).toBe(true);
    }
    expect(new Set(ids).size).toBe(ids.length);
    // 5000 ids cannot fit one millisecond's 12-bit counter: later ones borrow the next millisecond
    // rather than wrapping around and breaking the order.
    expect(generationIdTimestamp(ids[4999])).toBeGreaterThan(base);
  });

  it('sort like their creation times', () => {
    const times = [Date.UTC(2033, 0, 1), Date.UTC(2033, 0, 2), Date.UTC(2040, 5, 5)];
    const ids = times.map((t) => newGenerationId(t));
    expect([...ids].sort()).toEqual(ids);
    expect(ids.map(generationIdTimestamp)).toEqual(times);
  });

  it.each([
    ['empty', ''],
    ['uppercase', '0190A1B2-C3D4-7E5F-8A6B-7C8D9E0F1A2B'],
    ['version 4', '0190a1b2-c3d4-4e5f-8a6b-7c8d9e0f1a2b'],
    ['wrong variant', '0190a1b2-c3d4-7e5f-ca6b-7c8d9e0f1a2b'],
    ['no dashes', '0190a1b2c3d47e5f8a6b7c8d9e0f1a2b'],
    ['too long', '0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b0'],
    ['trailing newline', '0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b\n'],
    ['path traversal', '../../etc/passwd'],
  ])('rejects %s', (_name, value) => {
    expect(isGenerationId(value)).toBe(false);
  });

  it('rejects non-strings and accepts a hand-written valid id', () => {
    expect(isGenerationId(undefined)).toBe(false);
    expect(isGenerationId(42)).toBe(false);
    expect(isGenerationId('0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b')).toBe(true);
    expect(() => generationIdTimestamp('nope')).toThrow(TypeError);
  });
});

import { promptWithPaletteHint } from './reference-images';

const color = (hex: string, proportion: number) => ({ hex, rgb: [0, 0, 0] as [number, number, number], proportion });

describe('promptWithPaletteHint', () => {
  it("appends the references' colours, most frequent first, without repeats, at most eight", () => {
    const references = [
      { palette: [color('#C81E1E', 0.6), color('#ffffff', 0.4)] },
      { palette: [color('#1e3cc8', 0.7), color('#c81e1e', 0.3)] },
      { palette: Array.from({ length: 10 }, (_, i) => color(`#00000${i}`, 0.01)) },
    ];
    expect(promptWithPaletteHint('a quiet landscape', references)).toBe(
      'a quiet landscape\n\nUse this colour palette: #1e3cc8, #c81e1e, #ffffff, #000000, #000001, #000002, #000003, #000004.',
    );
  });

  it('leaves the prompt alone when there is no colour', () => {
    expect(promptWithPaletteHint('a quiet landscape', [])).toBe('a quiet landscape');
  });
});

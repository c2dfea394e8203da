import sharp from 'sharp';
import { ASPECT_RATIOS } from '../../common/generation.model';
import { IMAGE_SIZES, NAMED_COLORS, paintPicture, PngCache, promptColors, renderPng, Rgb } from './emulator-image';

/** Share of pixels nearest to each of `palette` (squared RGB distance). */
function shares(pixels: Buffer, palette: Rgb[]): number[] {
  const counts = palette.map(() => 0);
  for (let i = 0; i < pixels.length; i += 3) {
    let best = 0;
    let bestDistance = Infinity;
    palette.forEach(([r, g, b], k) => {
      const d = (pixels[i] - r) ** 2 + (pixels[i + 1] - g) ** 2 + (pixels[i + 2] - b) ** 2;
      if (d < bestDistance) {
        bestDistance = d;
        best = k;
      }
    });
    counts[best]++;
  }
  const total = pixels.length / 3;
  return counts.map((c) => c / total);
}

describe('promptColors', () => {
  it('takes colour words and #rrggbb in order of mention, with shades, without duplicates', () => {
    expect(promptColors('A Navy boat, a #FF8800 sun and navy waves under a light blue sky').colors).toEqual([
      NAMED_COLORS.navy,
      [255, 136, 0],
      [131, 164, 236], // blue [30, 90, 220] blended 45 % towards white
    ]);
  });

  it('ignores colour words inside other words', () => {
    expect(promptColors('a redwood and a bluebird').named).toBe(false);
  });

  it('derives three stable colours from the prompt when none is named', () => {
    const a = promptColors('a cat on a mat');
    expect(a.named).toBe(false);
    expect(a.colors).toHaveLength(3);
    expect(promptColors('a cat on a mat').colors).toEqual(a.colors);
    expect(promptColors('a dog on a log').colors).not.toEqual(a.colors);
  });
});

describe('paintPicture', () => {
  it.each(ASPECT_RATIOS)('paints %s at Gemini 2.5 Flash Image size', (ratio) => {
    const { width, height, pixels } = paintPicture('red and blue', ratio);
    expect({ width, height }).toEqual(IMAGE_SIZES[ratio]);
    expect(pixels.length).toBe(width * height * 3);
  });

  it('"solid" gives one flat colour', () => {
    const { pixels } = paintPicture('a solid red square', '1:1');
    const [r, g, b] = NAMED_COLORS.red;
    for (let i = 0; i < pixels.length; i += 3) {
      if (pixels[i] !== r || pixels[i + 1] !== g || pixels[i + 2] !== b) throw new Error(`pixel ${i / 3} is not red`);
    }
  });

  it.each(['1:1', '9:16', '16:9'] as const)('gives the first colour the largest area: 60/30/10 for three colours (%s)', (ratio) => {
    const palette = [NAMED_COLORS.red, NAMED_COLORS.blue, NAMED_COLORS.green];
    const measured = shares(paintPicture('a red sky, a blue sun and green hills', ratio).pixels, palette);
    expect(measured[0]).toBeCloseTo(0.6, 1);
    expect(measured[1]).toBeCloseTo(0.3, 1);
    expect(measured[2]).toBeCloseTo(0.1, 1);
  });

  it('is not flat without "solid" (noise and gradient)', () => {
    const { pixels } = paintPicture('an orange field', '1:1');
    const distinct = new Set<number>();
    for (let i = 0; i < 30_000; i += 3) distinct.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
    expect(distinct.size).toBeGreaterThan(5);
  });
});

describe('renderPng', () => {
  it('same prompt and ratio → identical PNG bytes; another ratio → another picture', async () => {
    const [a, b, c] = await Promise.all([renderPng('yellow and purple', '4:3'), renderPng('yellow and purple', '4:3'), renderPng('yellow and purple', '3:4')]);
    expect(a.equals(b)).toBe(true);
    expect(a.equals(c)).toBe(false);
    expect(await sharp(a).metadata()).toMatchObject({ format: 'png', width: 1184, height: 864 });
  });
});

describe('PngCache', () => {
  it('renders once per key, shares concurrent renders and evicts the least recently used', async () => {
    const render = jest.fn(async (prompt: string) => Buffer.from(prompt));
    const cache = new PngCache(2, render);
    await Promise.all([cache.get('a', '1:1'), cache.get('a', '1:1')]);
    await cache.get('b', '1:1');
    await cache.get('a', '1:1'); // a is now the most recent
    await cache.get('c', '1:1'); // evicts b
    await cache.get('a', '1:1');
    await cache.get('b', '1:1');
    expect(render.mock.calls.map(([prompt]) => prompt)).toEqual(['a', 'b', 'c', 'b']);
    expect({ size: cache.size, hits: cache.hits, renders: cache.renders }).toEqual({ size: 2, hits: 3, renders: 4 });
  });

  it('forgets a failed render so the next request retries it', async () => {
    let fail = true;
    const cache = new PngCache(4, async () => {
      if (fail) throw new Error('render failed');
      return Buffer.from('ok');
    });
    await expect(cache.get('x', '1:1')).rejects.toThrow('render failed');
    fail = false;
    await expect(cache.get('x', '1:1')).resolves.toEqual(Buffer.from('ok'));
  });
});

/**
 * Every format and edge case of issue #3 through the real worker pool (PaletteService → Piscina →
 * palette.worker.ts under Node's type stripping → sharp + node-vibrant).
 */
import sharp from 'sharp';
import { loadConfig } from '../../src/config/app-config';
import { deltaE2000Rgb } from '../../src/palette/delta-e';
import { PaletteError } from '../../src/palette/palette.errors';
import { PaletteService } from '../../src/palette/palette.service';
import type { PaletteResult } from '../../src/palette/palette.types';
import {
  animatedGif,
  cmykJpeg,
  ColorShare,
  encode,
  exifRotatedJpeg,
  greyscalePng,
  hexToRgb,
  hugePng,
  matchPalette,
  meanOfColumns,
  onePixelPng,
  OutputFormat,
  pixelBombPng,
  png16,
  referenceImage,
  REFERENCE_COLORS,
  regionsRaw,
  truncate,
} from '../support/images';
import { noopPaletteMetrics } from '../support/metrics';

function expectColors(result: PaletteResult, expected: readonly ColorShare[], maxDeltaE = 3, maxShareError = 0.03): void {
  const misses = matchPalette(expected, result.colors)
    .filter((m) => m.deltaE > maxDeltaE || m.shareError > maxShareError)
    .map((m) => `${m.expected.hex} → ${m.found?.hex ?? 'none'}: ΔE00 ${m.deltaE.toFixed(2)}, share off by ${m.shareError.toFixed(3)}`);
  expect(misses).toEqual([]);
  const total = result.colors.reduce((s, c) => s + c.proportion, 0);
  expect(Math.abs(total - 1)).toBeLessThanOrEqual(0.01);
}

async function rejection(promise: Promise<unknown>): Promise<PaletteError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PaletteError);
  return error as PaletteError;
}

describe('palette formats through the worker pool', () => {
  let palettes: PaletteService;

  beforeAll(() => {
    palettes = new PaletteService(loadConfig({ PALETTE_WORKERS: '2', PALETTE_MAX_QUEUE: '32' }), noopPaletteMetrics);
  });
  afterAll(() => palettes.onModuleDestroy());

  it.each<[OutputFormat, string]>([
    ['png', 'png'],
    ['jpeg', 'jpeg'],
    ['webp', 'webp'],
    ['avif', 'avif'],
    ['gif', 'gif'],
    ['tiff', 'tiff'],
  ])('reads %s', async (format, reported) => {
    const result = await palettes.extract(await referenceImage(format, { width: 384, height: 256 }), 3);
    expect(result).toMatchObject({ width: 384, height: 256, format: reported });
    expectColors(result, REFERENCE_COLORS);
  });

  it('serves many formats at once, each with its own answer', async () => {
    const formats: OutputFormat[] = ['png', 'jpeg', 'webp', 'gif', 'tiff', 'png', 'jpeg', 'webp'];
    const images = await Promise.all(formats.map((f, i) => referenceImage(f, { width: 200 + i, height: 100 })));
    const results = await Promise.all(images.map((image) => palettes.extract(image, 3)));
    results.forEach((result, i) => {
      expect(result.width).toBe(200 + i);
      expectColors(result, REFERENCE_COLORS);
    });
  });

  it('reads a single-channel greyscale PNG', async () => {
    const image = await greyscalePng();
    expect((await sharp(image).metadata()).channels).toBe(1);
    const result = await palettes.extract(image, 2);
    expectColors(result, [
      { hex: '#404040', share: 0.7 },
      { hex: '#c0c0c0', share: 0.3 },
    ]);
  });

  it('reads a 16-bit PNG', async () => {
    const image = await png16({ noise: 8 });
    expect((await sharp(image).metadata()).depth).toBe('ushort');
    expectColors(await palettes.extract(image, 3), REFERENCE_COLORS);
  });

  it('colour-manages a CMYK JPEG into sRGB', async () => {
    const image = await cmykJpeg();
    expect((await sharp(image).metadata()).space).toBe('cmyk');
    // Ground truth: the file's colours as a full-size, colour-managed decode sees them.
    const { data, info } = await sharp(image).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    const raw = { data, width: info.width, height: info.height, channels: info.channels as 3 };
    const stripes = [[0, 307], [307, 461], [461, 512]] as const;
    const expected = REFERENCE_COLORS.map((c, i) => {
      const rgb = meanOfColumns(raw, stripes[i][0] + 2, stripes[i][1] - 2);
      return { hex: `#${rgb.map((v) => v.toString(16).padStart(2, '0')).join('')}`, share: c.share };
    });
    const result = await palettes.extract(image, 3);
    expectColors(result, expected);
    // And still recognisably the colours that went in (the CMYK gamut moves saturated ones a bit).
    for (const m of matchPalette(REFERENCE_COLORS, result.colors)) expect(m.deltaE).toBeLessThan(6);
  });

  it('uses the first frame of an animated GIF', async () => {
    const image = await animatedGif(['#d43434', '#2a4d9b', '#f2e8cf'], 64, 48);
    expect((await sharp(image).metadata()).pages).toBe(3);
    const result = await palettes.extract(image, 3);
    expect(result).toMatchObject({ width: 64, height: 48, format: 'gif' });
    expect(result.colors).toHaveLength(1);
    expect(deltaE2000Rgb(result.colors[0].rgb, hexToRgb('#d43434'))).toBeLessThanOrEqual(3);
    expect(result.colors[0].proportion).toBe(1);
  });

  it('applies the EXIF orientation to the reported size', async () => {
    const image = await exifRotatedJpeg(300, 100);
    expect((await sharp(image).metadata()).orientation).toBe(6);
    const result = await palettes.extract(image, 3);
    expect(result).toMatchObject({ width: 100, height: 300, format: 'jpeg' });
    expectColors(result, REFERENCE_COLORS);
  });

  it('handles a 1×1 image', async () => {
    const result = await palettes.extract(await onePixelPng('#2a4d9b'), 5);
    expect(result).toMatchObject({ width: 1, height: 1, colors: [{ hex: '#2a4d9b', rgb: [42, 77, 155], proportion: 1 }] });
  });

  it('ignores transparent pixels', async () => {
    const image = await encode(regionsRaw(REFERENCE_COLORS, { transparentShare: 0.5, noise: 6 }), 'png');
    expectColors(await palettes.extract(image, 3), REFERENCE_COLORS);
  });

  it('handles an 8000×8000 image', async () => {
    const result = await palettes.extract(await hugePng(8000), 3);
    expect(result).toMatchObject({ width: 8000, height: 8000 });
    expectColors(result, REFERENCE_COLORS);
  });

  it('refuses a decompression bomb from its header (a 90-byte file announcing 144 M pixels)', async () => {
    const bomb = await pixelBombPng(12_000);
    expect(bomb.byteLength).toBeLessThan(200);
    const error = await rejection(palettes.extract(bomb, 5));
    expect(error.code).toBe('IMAGE_TOO_LARGE');
    expect(error.message).toMatch(/more than 100000000 pixels/);
  });

  it.each<[string, () => Promise<Buffer>]>([
    ['truncated PNG', async () => truncate(await referenceImage('png', { noise: 10 }), 0.6)],
    ['truncated JPEG', async () => truncate(await referenceImage('jpeg', { noise: 10 }), 0.6)],
    ['text', async () => Buffer.from('this is not an image')],
    ['SVG', async () => Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')],
    ['empty', async () => Buffer.alloc(0)],
    ['PNG signature only', async () => Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])],
  ])('refuses %s with UNSUPPORTED_IMAGE', async (_name, make) => {
    const error = await rejection(palettes.extract(await make(), 5));
    expect(error.code).toBe('UNSUPPORTED_IMAGE');
  });

  it('keeps serving after refusing bad input', async () => {
    await rejection(palettes.extract(Buffer.from('junk'), 5));
    expectColors(await palettes.extract(await referenceImage('png'), 3), REFERENCE_COLORS);
    expect(palettes.stats()).toMatchObject({ workers: 2, queued: 0 });
  });
});

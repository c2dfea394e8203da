/**
 * What the palette worker lets through to a decoder, and how much work it accepts (issues 5, 6 and
 * 10 of the security review): the AVIF check that SVG walked around, the process-wide loader
 * allowlist, the decoded-size bound (pixels × channels × bytes per sample, from the header), clean
 * client messages, and images given as files.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { deepPngBomb, encode, hugeCanvasGif, onePixelPng, png16, referenceImage, regionsRaw, REFERENCE_COLORS, svgDisguises, truncate, type OutputFormat } from '../../test/support/images';
import { ALLOWED_LOADERS, restrictDecoders } from './decoders';
import paletteTask, {
  assertDecoder,
  classifyDecodeError,
  decodeForPalette,
  DEFAULT_DECODE_LIMITS,
  ImageInputError,
  MAX_INPUT_PIXELS,
  sniffFormat,
  UNSUPPORTED_IMAGE_MESSAGE,
} from './palette.worker';
import { DEFAULT_MAX_DECODED_MB } from './palette.types';

const FORMATS: OutputFormat[] = ['png', 'jpeg', 'webp', 'avif', 'gif', 'tiff'];

/** The ImageInputError a decode fails with (fails the test if it succeeds). */
async function refusal(input: Uint8Array | string, limits = DEFAULT_DECODE_LIMITS): Promise<ImageInputError> {
  const error = await decodeForPalette(input, limits).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ImageInputError);
  return error as ImageInputError;
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'palette-input-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sniffFormat: whole signatures, and for AVIF a plausible ftyp box', () => {
  it.each(Object.entries(svgDisguises()))('refuses %s', (_name, bytes) => {
    expect(sniffFormat(bytes)).toBeNull();
  });

  it.each([
    ['a box size that is not a multiple of 4', [0, 0, 0, 0x1d]],
    ['a box larger than 256 bytes', [0, 0, 0x01, 0x04]],
    ['a box shorter than its brands', [0, 0, 0, 0x0c]],
  ])('refuses an ftyp box with %s', (_name, size) => {
    const header = Buffer.concat([Buffer.from(size), Buffer.from('ftypavif\0\0\0\0avifmif1miaf', 'latin1'), Buffer.alloc(300)]);
    expect(sniffFormat(header)).toBeNull();
  });

  it('refuses an ftyp box that runs past the bytes given (a cut file)', () => {
    expect(sniffFormat(Buffer.concat([Buffer.from([0, 0, 0, 0x20]), Buffer.from('ftypavif\0\0\0\0avif', 'latin1')]))).toBeNull();
  });

  it.each([
    ['a PNG signature cut after "PNG"', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0])],
    ['GIF8 without its version', Buffer.from('GIF8xx', 'latin1')],
  ])('refuses %s', (_name, header) => {
    expect(sniffFormat(header)).toBeNull();
  });

  it.each(FORMATS)('still recognises a %s written by sharp', async (format) => {
    expect(sniffFormat(await encode(regionsRaw(REFERENCE_COLORS, { width: 16, height: 16 }), format))).toBe(format);
  });
});

describe('the libvips loader allowlist (restrictDecoders)', () => {
  beforeAll(() => restrictDecoders());

  it.each(Object.entries(svgDisguises()))('libvips itself refuses %s, format check or not', async (_name, bytes) => {
    await expect(sharp(bytes).metadata()).rejects.toThrow(/unsupported image format/);
  });

  it.each(FORMATS)('decodes %s from a buffer and from a file', async (format) => {
    const image = await encode(regionsRaw(REFERENCE_COLORS, { width: 16, height: 16 }), format);
    const file = join(dir, `allowed.${format}`);
    writeFileSync(file, image);
    for (const input of [image, file]) {
      const { info } = await sharp(input).resize(8).raw().toBuffer({ resolveWithObject: true });
      expect(info.width).toBe(8);
    }
  });

  it('names loaders that exist: each one alone lets exactly one of the six formats through', async () => {
    // libvips ignores an unknown name, so a misspelt entry would silently block its format.
    const images = await Promise.all(FORMATS.map((format) => encode(regionsRaw(REFERENCE_COLORS, { width: 8, height: 8 }), format)));
    const decodable = async () => (await Promise.all(images.map((image) => sharp(image).metadata().then(() => 1, () => 0)))).reduce((a, b) => a + b, 0);
    try {
      for (const loader of ALLOWED_LOADERS) {
        sharp.block({ operation: ['VipsForeignLoad'] });
        sharp.unblock({ operation: [loader] });
        expect({ loader, formats: await decodable() }).toEqual({ loader, formats: 1 });
      }
    } finally {
      sharp.block({ operation: ['VipsForeignLoad'] });
      sharp.unblock({ operation: [...ALLOWED_LOADERS] });
    }
    expect(await decodable()).toBe(FORMATS.length);
  });
});

describe('decodeForPalette refuses what it cannot safely read', () => {
  it.each(Object.entries(svgDisguises()))('%s → UNSUPPORTED_IMAGE, before any decoder runs', async (_name, bytes) => {
    const error = await refusal(bytes);
    expect(error).toMatchObject({ code: 'UNSUPPORTED_IMAGE', message: UNSUPPORTED_IMAGE_MESSAGE });
  });

  it('requires the decoder libvips picks to be the one of the sniffed format', () => {
    expect(() => assertDecoder('avif', { format: 'svg' })).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_IMAGE', detail: expect.stringMatching(/svg/) }));
    expect(() => assertDecoder('avif', { format: 'heif', compression: 'hevc' })).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_IMAGE' }));
    expect(() => assertDecoder('png', { format: 'jpeg' })).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_IMAGE' }));
    expect(() => assertDecoder('avif', { format: 'heif', compression: 'av1' })).not.toThrow();
    for (const format of ['png', 'jpeg', 'webp', 'gif', 'tiff'] as const) expect(() => assertDecoder(format, { format })).not.toThrow();
  });

  it('answers one fixed message for every unreadable file; libvips’ words stay in `detail`', async () => {
    const png = await referenceImage('png', { width: 128, height: 128, noise: 20 });
    const jpeg = await referenceImage('jpeg', { width: 128, height: 128, noise: 20 });
    const corruptHeader = Buffer.from(png);
    corruptHeader.fill(0xff, 16, 40);
    // One after the other: libvips keeps one error buffer, and concurrent failures can clobber its text.
    const errors = [];
    for (const b of [Buffer.from('plain text'), truncate(png), truncate(jpeg), corruptHeader]) errors.push(await refusal(b));
    for (const error of errors) {
      expect(error).toMatchObject({ code: 'UNSUPPORTED_IMAGE', message: UNSUPPORTED_IMAGE_MESSAGE });
      expect(error.message).not.toMatch(/vips|glib|libpng|jpeg:|Input buffer/i);
    }
    // The decoder's own words are kept for the server's log.
    expect(errors.map((e) => e.detail)).toEqual([
      expect.stringMatching(/signature/),
      expect.stringMatching(/png|read/i),
      // libvips' wording for a cut JPEG varies by version (sometimes only "Unknown error"): kept, whatever it says.
      expect.stringMatching(/\S/),
      expect.stringMatching(/\S/),
    ]);
  });

  it('maps sharp’s own failures: pixel limit → IMAGE_TOO_LARGE, its timeout → PALETTE_TIMEOUT, the rest → UNSUPPORTED_IMAGE', () => {
    expect(classifyDecodeError(new Error('Input image exceeds pixel limit'))).toMatchObject({ code: 'IMAGE_TOO_LARGE', message: `The image has more than ${MAX_INPUT_PIXELS} pixels` });
    expect(classifyDecodeError(new Error('timeout: 37% complete'))).toMatchObject({ code: 'PALETTE_TIMEOUT', detail: 'timeout: 37% complete' });
    expect(classifyDecodeError(new Error('VipsJpeg: premature end of JPEG image'))).toMatchObject({ code: 'UNSUPPORTED_IMAGE', message: UNSUPPORTED_IMAGE_MESSAGE });
  });
});

describe('decodeForPalette bounds the decoded size, not only the pixel count', () => {
  it('uses PALETTE_MAX_DECODED_MB’s default when given no limits', () => {
    expect(DEFAULT_DECODE_LIMITS.maxDecodedBytes).toBe(DEFAULT_MAX_DECODED_MB * 1024 * 1024);
  });

  it('refuses a 95-byte interlaced 16-bit PNG claiming 8000² pixels (64 M pixels, under the pixel limit) → IMAGE_TOO_LARGE', async () => {
    const bomb = await deepPngBomb(8000, 8000);
    expect(bomb.length).toBeLessThan(200);
    expect(8000 * 8000).toBeLessThan(MAX_INPUT_PIXELS);
    const error = await refusal(bomb);
    expect(error).toMatchObject({
      code: 'IMAGE_TOO_LARGE',
      message: 'The image is too large to analyse: 8000 × 8000 pixels × 4 channels × 16 bits is 489 MB decoded, over the limit of 320 MB',
    });
  });

  it('refuses a 43-byte GIF whose canvas is 10000² (exactly the pixel limit) as 4 bytes a pixel → IMAGE_TOO_LARGE', async () => {
    const gif = await hugeCanvasGif(10_000);
    expect(gif.length).toBeLessThan(100);
    expect((await sharp(gif).metadata()).width).toBe(10_000);
    const error = await refusal(gif);
    expect(error).toMatchObject({ code: 'IMAGE_TOO_LARGE', message: expect.stringContaining('10000 × 10000 pixels × 4 channels × 8 bits is 382 MB') });
  });

  it('counts the bytes of each sample: the same 64² image is allowed at 8 bits and refused at 16 bits under one limit', async () => {
    const eight = await referenceImage('png', { width: 64, height: 64 });
    const sixteen = await png16({ width: 64, height: 64 });
    const meta8 = await sharp(eight).metadata();
    const meta16 = await sharp(sixteen).metadata();
    expect([meta8.depth, meta16.depth]).toEqual(['uchar', 'ushort']);
    const bytes16 = 64 * 64 * (meta16.channels ?? 0) * 2;
    const limits = { maxDecodedBytes: bytes16 - 1, timeoutSeconds: 0 };
    await expect(decodeForPalette(eight, limits)).resolves.toMatchObject({ width: 64, height: 64 });
    expect(await refusal(sixteen, limits)).toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    // Exactly at the limit is allowed.
    await expect(decodeForPalette(sixteen, { ...limits, maxDecodedBytes: bytes16 })).resolves.toMatchObject({ width: 64, height: 64 });
  });
});

describe('images given as a file path', () => {
  it('decode exactly as the same bytes do', async () => {
    const image = await referenceImage('webp', { width: 200, height: 100, noise: 8 });
    const file = join(dir, 'upload-same');
    writeFileSync(file, image);
    const fromFile = await decodeForPalette(file);
    const fromBytes = await decodeForPalette(image);
    expect(fromFile).toEqual(fromBytes);
    const answer = await paletteTask({ image: file, size: 3 });
    expect(answer).toMatchObject({ ok: true, palette: { width: 200, height: 100, format: 'webp' } });
  });

  it('are sniffed from the file’s own first bytes: a disguised SVG on disk is refused', async () => {
    const file = join(dir, 'upload-polyglot');
    writeFileSync(file, svgDisguises()['<!--ftypavif--> + SVG']);
    await expect(paletteTask({ image: file, size: 3 })).resolves.toMatchObject({ ok: false, code: 'UNSUPPORTED_IMAGE', message: UNSUPPORTED_IMAGE_MESSAGE });
  });

  it('a file that is gone → UNSUPPORTED_IMAGE, with the reason in `detail`', async () => {
    const answer = await paletteTask({ image: join(dir, 'no-such-upload'), size: 3 });
    expect(answer).toMatchObject({ ok: false, code: 'UNSUPPORTED_IMAGE', detail: expect.stringMatching(/ENOENT/) });
  });

  it('a one-pixel file works', async () => {
    const file = join(dir, 'upload-one');
    writeFileSync(file, await onePixelPng('#123456'));
    await expect(paletteTask({ image: file, size: 5 })).resolves.toMatchObject({ ok: true, palette: { colors: [{ hex: '#123456' }] } });
  });
});

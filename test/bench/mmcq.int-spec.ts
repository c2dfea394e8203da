/**
 * The MMCQ quantizer the palette benchmark compares with the shipped k-means (test/bench/mmcq.ts):
 * it must still be a fair baseline, meeting the targets on the reference colours and giving
 * exactly `size` colours, or the benchmark's comparison means nothing.
 */
import { decodeForPalette } from '../../src/palette/palette.worker';
import { ACCURACY_CASES, encode, matchPalette, photoLikeRaw, REFERENCE_COLORS, regionsRaw } from '../support/images';
import { quantizeMmcq } from './mmcq';

const MAX_DELTA_E = 3;
const MAX_SHARE_ERROR = 0.03;
const decoded = async (image: Buffer) => (await decodeForPalette(image)).pixels;

describe('quantizeMmcq (node-vibrant MMCQ, the benchmark baseline)', () => {
  it.each(ACCURACY_CASES.filter((c) => c.colors === REFERENCE_COLORS).map((c) => [c.name, c] as const))(
    'meets the targets on the three reference colours: %s',
    async (_name, c) => {
      const palette = await quantizeMmcq(await decoded(await encode(regionsRaw(c.colors, c.opts), c.format)), 3);
      expect(Math.abs(palette.reduce((s, p) => s + p.proportion, 0) - 1)).toBeLessThanOrEqual(0.01);
      for (let i = 1; i < palette.length; i++) expect(palette[i - 1].proportion).toBeGreaterThanOrEqual(palette[i].proportion);
      const misses = matchPalette(c.colors, palette).filter((m) => m.deltaE > MAX_DELTA_E || m.shareError > MAX_SHARE_ERROR);
      expect(misses.map((m) => `${m.expected.hex} → ${m.found?.hex ?? 'none'}: ΔE00 ${m.deltaE.toFixed(2)}, share off by ${m.shareError.toFixed(3)}`)).toEqual([]);
    },
  );

  it('returns exactly `size` colours although MMCQ itself stops at about ¾ of them', async () => {
    const pixels = await decoded(await encode(photoLikeRaw(256, 256), 'png'));
    for (const size of [2, 5, 12]) expect(await quantizeMmcq(pixels, size)).toHaveLength(size);
  });
});

/**
 * node-vibrant's MMCQ as a palette quantizer: the alternative the shipped k-means in OKLab was
 * chosen over (docs/palette.md, "Why k-means/OKLab rather than MMCQ"). Benchmark only: the palette
 * benchmark compares the two for accuracy and time; the service never runs it.
 */
import { Vibrant } from 'node-vibrant/node';
import {
  buildHistogram,
  OPAQUE_ALPHA,
  pixelsImageClass,
  rgbToOklab,
  toPalette,
  UNUSED_SOURCE,
  type AnalysisPixels,
} from '../../src/palette/palette.worker';
import type { PaletteColor } from '../../src/palette/palette.types';

type Rgb = [number, number, number];

/**
 * `size` colours by MMCQ (modified median cut in RGB at 5 bits per channel). MMCQ stops splitting
 * at about ¾ of the requested count, so it is asked for more boxes and the least populous are then
 * merged into their nearest (OKLab) neighbour down to `size`. Pixels below OPAQUE_ALPHA count as
 * transparent, as for k-means (vibrant's histogram skips only alpha 0).
 */
export async function quantizeMmcq(pixels: AnalysisPixels, size: number): Promise<PaletteColor[]> {
  const h = buildHistogram(pixels);
  if (h.n === 0) return [];
  if (size === 1 || h.n === 1) {
    const sum = [0, 0, 0];
    for (let i = 0; i < 3 * h.n; i++) sum[i % 3] += h.sum[i];
    return toPalette([{ count: h.total, rgb: sum.map((c) => Math.round(c / h.total)) as Rgb }], h.total);
  }
  const data = new Uint8Array(pixels.data);
  for (let o = 3; o < data.length; o += 4) if (data[o] < OPAQUE_ALPHA) data[o] = 0;
  const vibrant = Vibrant.from(UNUSED_SOURCE)
    .useImageClass(pixelsImageClass({ ...pixels, data }))
    .clearFilters()
    .quality(1)
    .maxColorCount(Math.min(256, Math.ceil(size / 0.75) + 1))
    .build();
  await vibrant.getPalette();
  // vibrant's published types lose ProcessResult (a dangling import); this is the part read here.
  const result = vibrant.result as { colors: { population: number; rgb: number[] }[] } | undefined;
  const boxes = (result?.colors ?? []).map((s) => ({ count: s.population, rgb: [s.rgb[0], s.rgb[1], s.rgb[2]] as Rgb }));
  const lab = new Float64Array(3);
  const labOther = new Float64Array(3);
  while (boxes.length > size) {
    boxes.sort((a, b) => b.count - a.count);
    const smallest = boxes.pop()!;
    rgbToOklab(smallest.rgb[0], smallest.rgb[1], smallest.rgb[2], lab);
    let target = boxes[0];
    let best = Infinity;
    for (const box of boxes) {
      rgbToOklab(box.rgb[0], box.rgb[1], box.rgb[2], labOther);
      const d = (lab[0] - labOther[0]) ** 2 + (lab[1] - labOther[1]) ** 2 + (lab[2] - labOther[2]) ** 2;
      if (d < best) {
        best = d;
        target = box;
      }
    }
    const w = target.count + smallest.count;
    target.rgb = target.rgb.map((c, i) => (c * target.count + smallest.rgb[i] * smallest.count) / w) as Rgb;
    target.count = w;
  }
  return toPalette(
    boxes.map((b) => ({ count: b.count, rgb: b.rgb.map((c) => Math.round(c)) as Rgb })),
    h.total,
  );
}

import { deltaE2000, deltaE2000Rgb, Lab, rgbToLab } from './delta-e';

describe('deltaE2000', () => {
  // Test pairs from Sharma, Wu & Dalal (2005), table 1: they exercise the hue-angle wrap-around,
  // the G (a' rescaling) term and the rotation term that naive implementations get wrong.
  it.each<[Lab, Lab, number]>([
    [[50, 2.6772, -79.7751], [50, 0, -82.7485], 2.0425],
    [[50, 3.1571, -77.2803], [50, 0, -82.7485], 2.8615],
    [[50, 2.8361, -74.02], [50, 0, -82.7485], 3.4412],
    [[50, 0, 0], [50, -1, 2], 2.3669],
    [[50, -1, 2], [50, 0, 0], 2.3669],
    [[50, 2.5, 0], [73, 25, -18], 27.1492],
    [[50, 2.5, 0], [61, -5, 29], 22.8977],
    [[50, 2.5, 0], [56, -27, -3], 31.903],
    [[50, 2.5, 0], [58, 24, 15], 19.4535],
    [[60.2574, -34.0099, 36.2677], [60.4626, -34.1751, 39.4387], 1.2644],
    [[63.0109, -31.0961, -5.8663], [62.8187, -29.7946, -4.0864], 1.263],
    [[90.8027, -2.0831, 1.441], [91.1528, -1.6435, 0.0447], 1.4441],
    [[2.0776, 0.0795, -1.135], [0.9033, -0.0636, -0.5514], 0.9082],
  ])('%j vs %j = %d', (a, b, expected) => {
    expect(deltaE2000(a, b)).toBeCloseTo(expected, 4);
    expect(deltaE2000(b, a)).toBeCloseTo(expected, 4);
  });

  it('is zero for identical colours', () => {
    expect(deltaE2000([41.2, 12.5, -30], [41.2, 12.5, -30])).toBe(0);
  });
});

describe('rgbToLab', () => {
  it.each<[[number, number, number], Lab]>([
    [[255, 255, 255], [100, 0, 0]],
    [[0, 0, 0], [0, 0, 0]],
    [[255, 0, 0], [53.2408, 80.0925, 67.2032]],
    [[0, 0, 255], [32.297, 79.1875, -107.8602]],
  ])('%j → %j', (rgb, lab) => {
    rgbToLab(rgb).forEach((v, i) => expect(v).toBeCloseTo(lab[i], 3));
  });

  it('gives ΔE00 ≈ 0.4 between neighbouring sRGB codes and a large one between red and blue', () => {
    expect(deltaE2000Rgb([128, 128, 128], [129, 128, 128])).toBeLessThan(1);
    expect(deltaE2000Rgb([212, 52, 52], [42, 77, 155])).toBeGreaterThan(40);
  });
});

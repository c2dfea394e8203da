import { seededRandom } from '../../test/support/images';
import { deltaEOk, Oklab, rgbToOklab } from './color-space';
import { GROUND_CAP, groundDistance, paletteDistance, paletteDistanceLowerBound, WeightedColor } from './palette-distance';

const lab = (r: number, g: number, b: number): Oklab => rgbToOklab([r, g, b]);
const RED = lab(212, 52, 52);
const BLUE = lab(42, 77, 155);
const GREEN = lab(46, 139, 60);
const WHITE = lab(255, 255, 255);

/**
 * Exact EMD with two query colours: sending x_j of the first colour's mass to palette colour j
 * (the second colour takes the rest) costs Σ x_j (c1j − c2j) + Σ s_j c2j, a linear program whose
 * optimum fills the palette colours with the smallest c1j − c2j first.
 */
function twoColourOracle(q: WeightedColor[], p: WeightedColor[]): number {
  const qt = q[0].weight + q[1].weight;
  const pt = p.reduce((s, c) => s + c.weight, 0);
  const w1 = q[0].weight / qt;
  const shares = p.map((c) => c.weight / pt);
  const order = p.map((_, j) => j).sort((a, b) => groundDistance(q[0].lab, p[a].lab) - groundDistance(q[1].lab, p[a].lab) - (groundDistance(q[0].lab, p[b].lab) - groundDistance(q[1].lab, p[b].lab)));
  let left = w1;
  let cost = 0;
  for (const j of order) {
    const x = Math.min(left, shares[j]);
    left -= x;
    cost += x * groundDistance(q[0].lab, p[j].lab) + (shares[j] - x) * groundDistance(q[1].lab, p[j].lab);
  }
  return cost;
}

describe('OKLab', () => {
  it('matches the published values: white L = 1, black 0, sRGB red (0.628, 0.225, 0.126)', () => {
    expect(lab(255, 255, 255).map((v) => +v.toFixed(4))).toEqual([1, 0, 0]);
    expect(lab(0, 0, 0)).toEqual([0, 0, 0]);
    const red = lab(255, 0, 0);
    expect(red[0]).toBeCloseTo(0.628, 3);
    expect(red[1]).toBeCloseTo(0.2249, 3);
    expect(red[2]).toBeCloseTo(0.1258, 3);
    expect(deltaEOk(lab(0, 0, 0), WHITE)).toBeCloseTo(100, 3);
  });
});

describe('paletteDistance (Earth Mover’s Distance over OKLab)', () => {
  it('is 0 for the same colours in the same proportions, whatever the order or scale of the weights', () => {
    const p = [
      { lab: RED, weight: 0.6 },
      { lab: BLUE, weight: 0.4 },
    ];
    expect(paletteDistance(p, [...p].reverse())).toBeCloseTo(0, 9);
    expect(paletteDistance([{ lab: RED, weight: 60 }, { lab: BLUE, weight: 40 }], p)).toBeCloseTo(0, 9);
  });

  it('charges the mass that must move: the wrong proportions cost their difference times the distance', () => {
    const d = groundDistance(RED, BLUE);
    const query = [{ lab: RED, weight: 1 }];
    expect(paletteDistance(query, [{ lab: RED, weight: 0.9 }, { lab: BLUE, weight: 0.1 }])).toBeCloseTo(0.1 * d, 9);
    expect(paletteDistance(query, [{ lab: RED, weight: 0.4 }, { lab: BLUE, weight: 0.6 }])).toBeCloseTo(0.6 * d, 9);
    const half = [
      { lab: RED, weight: 1 },
      { lab: BLUE, weight: 1 },
    ];
    expect(paletteDistance(half, [{ lab: RED, weight: 0.8 }, { lab: BLUE, weight: 0.2 }])).toBeCloseTo(0.3 * d, 9);
  });

  it('caps the ground distance: every clearly different colour costs the same', () => {
    expect(groundDistance(lab(0, 0, 0), WHITE)).toBe(GROUND_CAP);
    expect(paletteDistance([{ lab: lab(0, 0, 0), weight: 1 }], [{ lab: WHITE, weight: 1 }])).toBe(GROUND_CAP);
    expect(paletteDistance([], [{ lab: WHITE, weight: 1 }])).toBe(GROUND_CAP);
  });

  it('equals the exact optimum on 2 000 random two-colour queries against palettes of 1–12 colours', () => {
    const rand = seededRandom(42);
    const randomColor = (): Oklab => lab(Math.floor(rand() * 256), Math.floor(rand() * 256), Math.floor(rand() * 256));
    for (let i = 0; i < 2000; i++) {
      const q = [0, 1].map(() => ({ lab: randomColor(), weight: 0.05 + rand() }));
      const p = Array.from({ length: 1 + Math.floor(rand() * 12) }, () => ({ lab: randomColor(), weight: 0.01 + rand() }));
      expect(paletteDistance(q, p)).toBeCloseTo(twoColourOracle(q, p), 6);
      expect(paletteDistance(q, p)).toBeGreaterThanOrEqual(paletteDistanceLowerBound(q, p) - 1e-9);
    }
  });

  it('is a metric on random palettes up to 5 × 12 colours: symmetric, and the triangle inequality holds', () => {
    const rand = seededRandom(7);
    const palette = (n: number) => Array.from({ length: n }, () => ({ lab: lab(Math.floor(rand() * 256), Math.floor(rand() * 256), Math.floor(rand() * 256)), weight: 0.01 + rand() }));
    for (let i = 0; i < 300; i++) {
      const [a, b, c] = [palette(1 + Math.floor(rand() * 5)), palette(1 + Math.floor(rand() * 12)), palette(1 + Math.floor(rand() * 12))];
      expect(paletteDistance(a, b)).toBeCloseTo(paletteDistance(b, a), 6);
      expect(paletteDistance(a, c)).toBeLessThanOrEqual(paletteDistance(a, b) + paletteDistance(b, c) + 1e-6);
    }
  });

  it('ranks a mostly-red image above a half-red one above a mostly-green one for "red"', () => {
    const q = [{ lab: RED, weight: 1 }];
    const mostly = paletteDistance(q, [{ lab: RED, weight: 0.8 }, { lab: GREEN, weight: 0.2 }]);
    const half = paletteDistance(q, [{ lab: RED, weight: 0.5 }, { lab: GREEN, weight: 0.5 }]);
    const green = paletteDistance(q, [{ lab: RED, weight: 0.1 }, { lab: GREEN, weight: 0.9 }]);
    expect(mostly).toBeLessThan(half);
    expect(half).toBeLessThan(green);
  });
});

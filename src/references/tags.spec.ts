import { parseQueryColor } from '../search/query-color';
import { parseTags } from './tags';

describe('parseTags', () => {
  it('splits at commas, trims, lower-cases, drops empties and repeats', () => {
    expect(parseTags(' Warm, studio,, WARM ,Ünïcödé ')).toEqual({ tags: ['warm', 'studio', 'ünïcödé'] });
    expect(parseTags(undefined)).toEqual({ tags: [] });
    expect(parseTags(' , ')).toEqual({ tags: [] });
  });

  it('refuses more than 20 tags, a tag over 50 characters, control characters and lone surrogates', () => {
    expect(parseTags(Array.from({ length: 20 }, (_, i) => `t${i}`).join(','))).toEqual({ tags: expect.any(Array) });
    expect(parseTags(Array.from({ length: 21 }, (_, i) => `t${i}`).join(','))).toEqual({ problem: 'at most 20 tags' });
    expect(parseTags('😀'.repeat(50))).toEqual({ tags: ['😀'.repeat(50)] });
    expect(parseTags('x'.repeat(51))).toHaveProperty('problem');
    expect(parseTags('a\tb')).toHaveProperty('problem');
    expect(parseTags('bad\ud800')).toHaveProperty('problem');
  });
});

describe('parseQueryColor', () => {
  it('reads #rrggbb and #rrggbb:weight (the # optional), weights in (0, 100]', () => {
    expect(parseQueryColor('#D43434')).toEqual({ rgb: [212, 52, 52], weight: 1 });
    expect(parseQueryColor('d43434:70')).toEqual({ rgb: [212, 52, 52], weight: 70 });
    expect(parseQueryColor('#d43434:0.5')).toEqual({ rgb: [212, 52, 52], weight: 0.5 });
    expect(parseQueryColor('#d43434:100')).toEqual({ rgb: [212, 52, 52], weight: 100 });
    for (const bad of ['#d43434:0', '#d43434:100.5', '#d43434:-1', '#d43434:', '#d4343', 'red', '#d43434:1e2', ' #d43434']) {
      expect(parseQueryColor(bad)).toBeNull();
    }
  });
});

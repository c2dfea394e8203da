import { parsePrompt } from './emulator-directives';

describe('parsePrompt', () => {
  it('reads directives and strips them from the text', () => {
    const parsed = parsePrompt('a [emulator:latency=250] red fox [Emulator:429x2] in snow [emulator:text]');
    expect(parsed).toEqual({
      text: 'a red fox in snow',
      unknown: [],
      directives: { hang: false, hangTimes: undefined, latencyMs: 250, fail: { status: 429, times: 2 }, block: false, textOnly: true, retryAfterS: undefined },
    });
  });

  it.each([
    ['[emulator:hang] x', { hang: true, hangTimes: undefined }],
    ['[emulator:hangx1] x', { hang: true, hangTimes: 1 }],
    ['[emulator:block] x', { block: true }],
    ['[emulator:500] x', { fail: { status: 500, times: undefined } }],
    ['[emulator:503x1] x', { fail: { status: 503, times: 1 } }],
    ['[emulator:429x1] [emulator:retryafter=5] x', { fail: { status: 429, times: 1 }, retryAfterS: 5 }],
  ])('%s', (prompt, expected) => {
    expect(parsePrompt(prompt).directives).toMatchObject(expected);
  });

  it('reports unknown directives instead of ignoring them', () => {
    expect(parsePrompt('x [emulator:hnag] [emulator:404] [emulator:retryafter=0]').unknown).toEqual(['[emulator:hnag]', '[emulator:404]', '[emulator:retryafter=0]']);
  });

  it('leaves a plain prompt alone', () => {
    expect(parsePrompt('  a blue  sky ')).toMatchObject({ text: 'a blue sky', unknown: [], directives: { hang: false, fail: undefined } });
  });
});

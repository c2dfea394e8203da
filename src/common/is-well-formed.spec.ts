import { validateSync } from 'class-validator';
import { IsWellFormed } from './is-well-formed';

class Sample {
  @IsWellFormed()
  title?: unknown;

  @IsWellFormed({ each: true })
  tags?: unknown[];
}

const problems = (values: Partial<Sample>) =>
  validateSync(Object.assign(new Sample(), values)).flatMap((e) => Object.values(e.constraints ?? {}));

describe('@IsWellFormed', () => {
  it('passes well-formed text, surrogate pairs included, and leaves non-strings to other rules', () => {
    expect(problems({ title: 'naïve 🐱 日本', tags: ['a', '𝄞'] })).toEqual([]);
    expect(problems({ title: 42, tags: undefined })).toEqual([]);
  });

  it('refuses a lone surrogate, in a field or in any element of an array', () => {
    expect(problems({ title: 'a \ud800 b' })).toEqual(['title must be well-formed Unicode text (it contains a lone surrogate)']);
    expect(problems({ tags: ['ok', '\udc00'] })).toEqual(['tags must be well-formed Unicode text (it contains a lone surrogate)']);
  });
});

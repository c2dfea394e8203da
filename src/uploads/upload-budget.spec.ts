import { UploadBudget } from './upload-budget';

describe('UploadBudget', () => {
  it('admits uploads while their declared bytes fit, refuses the one that would not, and admits again once bytes come back', () => {
    const budget = new UploadBudget(1000);
    const a = budget.reserve(600);
    const b = budget.reserve(400);
    expect(a).toEqual(expect.any(Function));
    expect(b).toEqual(expect.any(Function));
    expect(budget.stats()).toEqual({ bytes: 1000, uploads: 2 });
    expect(budget.reserve(1)).toBeNull();
    b!();
    expect(budget.reserve(401)).toBeNull();
    const c = budget.reserve(400);
    expect(c).not.toBeNull();
    a!();
    c!();
    expect(budget.stats()).toEqual({ bytes: 0, uploads: 0 });
  });

  it('admits a lone upload larger than the whole budget (a low bound must not refuse every large upload forever), but nothing beside it', () => {
    const budget = new UploadBudget(100);
    const big = budget.reserve(5000);
    expect(big).not.toBeNull();
    expect(budget.reserve(1)).toBeNull();
    big!();
    expect(budget.reserve(1)).not.toBeNull();
  });

  it('gives bytes back once however often the release is called', () => {
    const budget = new UploadBudget(1000);
    const a = budget.reserve(700)!;
    budget.reserve(200);
    a();
    a();
    expect(budget.stats()).toEqual({ bytes: 200, uploads: 1 });
  });

  it('suggests a Retry-After between 1 and 60 seconds', () => {
    const budget = new UploadBudget(10);
    for (let i = 0; i < 50; i++) budget.reserve(1)!();
    expect(budget.retryAfterSeconds()).toBeGreaterThanOrEqual(1);
    expect(budget.retryAfterSeconds()).toBeLessThanOrEqual(60);
  });
});

import { routeTemplate } from './http-route';

describe('routeTemplate of requests no route of the API matched', () => {
  it('is undefined for the catch-all "routes" Express leaves on them (middleware and 404 handler mounts)', () => {
    // nestjs-pino's middleware route, and Nest's prefixed 404 handler.
    for (const path of ['{/*splat}', '*path', '/*splat', '/{*rest}']) {
      expect([path, routeTemplate({ baseUrl: '', route: { path } })]).toEqual([path, undefined]);
    }
    expect(routeTemplate({ baseUrl: '/api', route: { path: '*path' } })).toBeUndefined();
  });

  it('keeps real routes, wildcards inside a route included', () => {
    expect(routeTemplate({ baseUrl: '', route: { path: '/files/*path' } })).toBe('/files/*path');
    expect(routeTemplate({ baseUrl: '', route: { path: '/api/v1/generations/:id' } })).toBe('/api/v1/generations/:id');
  });
});

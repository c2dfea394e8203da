import { geminiServerAttributes } from './gemini-server-attributes';

describe('geminiServerAttributes', () => {
  it("is Google's public endpoint on 443 without a base URL", () => {
    expect(geminiServerAttributes(undefined)).toEqual({ 'server.address': 'generativelanguage.googleapis.com', 'server.port': 443 });
  });
  it('is the host and port of GEMINI_BASE_URL, with the scheme default when it names no port', () => {
    expect(geminiServerAttributes('http://127.0.0.1:41234')).toEqual({ 'server.address': '127.0.0.1', 'server.port': 41234 });
    expect(geminiServerAttributes('https://gemini-proxy.internal/base/')).toEqual({ 'server.address': 'gemini-proxy.internal', 'server.port': 443 });
    expect(geminiServerAttributes('http://gemini-proxy.internal')).toEqual({ 'server.address': 'gemini-proxy.internal', 'server.port': 80 });
    expect(geminiServerAttributes('http://[::1]:8080')).toEqual({ 'server.address': '::1', 'server.port': 8080 });
  });
});

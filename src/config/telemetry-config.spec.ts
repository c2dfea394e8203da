import { DiagLogLevel } from '@opentelemetry/api';
import { loadConfig } from './app-config';
import { parseResourceAttributes } from './telemetry-config';

const telemetry = (env: Record<string, string>) => loadConfig(env).telemetry;
const ENDPOINT = 'http://collector:4318';

describe('telemetryConfig: the OpenTelemetry variables, as the SDK specification reads them', () => {
  it('defaults: Prometheus only, nothing exported over OTLP, diagnostics at warn', () => {
    expect(telemetry({})).toEqual({
      disabled: false,
      serviceName: 'hybrid-image-search',
      traces: { otlp: null },
      metrics: { prometheus: true, otlp: null },
      diagLogLevel: DiagLogLevel.WARN,
      warnings: [],
    });
    expect(telemetry({ METRICS_PORT: '0' }).metrics).toEqual({ prometheus: false, otlp: null });
  });

  it('OTEL_EXPORTER_OTLP_ENDPOINT turns on both signals, in http/protobuf (the specification default)', () => {
    expect(telemetry({ OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT })).toMatchObject({
      traces: { otlp: 'http/protobuf' },
      metrics: { prometheus: true, otlp: 'http/protobuf' },
    });
  });

  it('a per-signal endpoint alone turns on that signal only', () => {
    expect(telemetry({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${ENDPOINT}/v1/traces` })).toMatchObject({
      traces: { otlp: 'http/protobuf' },
      metrics: { otlp: null },
    });
    expect(telemetry({ OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: `${ENDPOINT}/v1/metrics` })).toMatchObject({
      traces: { otlp: null },
      metrics: { otlp: 'http/protobuf' },
    });
  });

  it('OTEL_EXPORTER_OTLP_PROTOCOL and the per-signal protocols (which win), case-insensitive', () => {
    const base = { OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT };
    expect(telemetry({ ...base, OTEL_EXPORTER_OTLP_PROTOCOL: 'HTTP/JSON' })).toMatchObject({ traces: { otlp: 'http/json' }, metrics: { otlp: 'http/json' } });
    expect(telemetry({ ...base, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' })).toMatchObject({
      traces: { otlp: 'http/protobuf' },
      metrics: { otlp: 'http/json' },
    });
    expect(telemetry({ ...base, OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json' })).toMatchObject({
      traces: { otlp: 'http/protobuf' },
      metrics: { otlp: 'http/json' },
    });
  });

  it('grpc or an unknown protocol is logged and ignored: the default applies', () => {
    const c = telemetry({ OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc' });
    expect(c.traces.otlp).toBe('http/json');
    expect(c.warnings).toEqual([expect.stringMatching(/^OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc" is not supported .*ignored$/)]);
  });

  it('OTEL_TRACES_EXPORTER: none wins over an endpoint; otlp exports even without one (to the SDK default)', () => {
    expect(telemetry({ OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT, OTEL_TRACES_EXPORTER: 'none' })).toMatchObject({
      traces: { otlp: null },
      metrics: { otlp: 'http/protobuf' },
      warnings: [],
    });
    expect(telemetry({ OTEL_TRACES_EXPORTER: 'OTLP' }).traces.otlp).toBe('http/protobuf');
    const mixed = telemetry({ OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT, OTEL_TRACES_EXPORTER: 'otlp,none' });
    expect(mixed.traces.otlp).toBeNull();
    expect(mixed.warnings).toEqual([expect.stringContaining('none turns the others off')]);
  });

  it('OTEL_TRACES_EXPORTER: an unsupported exporter is logged and ignored', () => {
    const c = telemetry({ OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT, OTEL_TRACES_EXPORTER: 'zipkin' });
    // As if unset: the endpoint decides.
    expect(c.traces.otlp).toBe('http/protobuf');
    expect(c.warnings).toEqual([expect.stringMatching(/^OTEL_TRACES_EXPORTER: "zipkin" is not supported/)]);
    expect(telemetry({ OTEL_TRACES_EXPORTER: 'console,otlp' })).toMatchObject({ traces: { otlp: 'http/protobuf' }, warnings: [expect.stringContaining('"console"')] });
  });

  it('OTEL_METRICS_EXPORTER: none, prometheus, otlp, and both', () => {
    const base = { OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT };
    expect(telemetry({ ...base, OTEL_METRICS_EXPORTER: 'none' }).metrics).toEqual({ prometheus: false, otlp: null });
    expect(telemetry({ ...base, OTEL_METRICS_EXPORTER: 'prometheus' }).metrics).toEqual({ prometheus: true, otlp: null });
    expect(telemetry({ ...base, OTEL_METRICS_EXPORTER: 'otlp' }).metrics).toEqual({ prometheus: false, otlp: 'http/protobuf' });
    expect(telemetry({ OTEL_METRICS_EXPORTER: 'prometheus, otlp' }).metrics).toEqual({ prometheus: true, otlp: 'http/protobuf' });
    const noPort = telemetry({ METRICS_PORT: '0', OTEL_METRICS_EXPORTER: 'prometheus' });
    expect(noPort.metrics.prometheus).toBe(false);
    expect(noPort.warnings).toEqual([expect.stringContaining('METRICS_PORT=0')]);
  });

  it('OTEL_SDK_DISABLED: only "true" (any case) is true; other values are false, with a warning', () => {
    expect(telemetry({ OTEL_SDK_DISABLED: 'TRUE' })).toMatchObject({ disabled: true, warnings: [] });
    expect(telemetry({ OTEL_SDK_DISABLED: 'false' })).toMatchObject({ disabled: false, warnings: [] });
    expect(telemetry({ OTEL_SDK_DISABLED: '' })).toMatchObject({ disabled: false, warnings: [] });
    for (const value of ['1', 'yes', 'on']) {
      expect(telemetry({ OTEL_SDK_DISABLED: value })).toMatchObject({ disabled: false, warnings: [expect.stringContaining('treated as false')] });
    }
  });

  it('service name: OTEL_SERVICE_NAME, else service.name in OTEL_RESOURCE_ATTRIBUTES, else the default', () => {
    const attrs = 'deployment.environment.name=prod,service.name=from%20attributes';
    expect(telemetry({ OTEL_RESOURCE_ATTRIBUTES: attrs }).serviceName).toBe('from attributes');
    expect(telemetry({ OTEL_RESOURCE_ATTRIBUTES: attrs, OTEL_SERVICE_NAME: 'from-name' }).serviceName).toBe('from-name');
    expect(telemetry({ OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod' }).serviceName).toBe('hybrid-image-search');
    expect(telemetry({ OTEL_SERVICE_NAME: '' }).serviceName).toBe('hybrid-image-search');
    // A malformed value is discarded whole (as the SDK's detector does), and said so.
    const bad = telemetry({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=a=b' });
    expect(bad.serviceName).toBe('hybrid-image-search');
    expect(bad.warnings).toEqual([expect.stringMatching(/^OTEL_RESOURCE_ATTRIBUTES discarded/)]);
  });

  it('OTEL_LOG_LEVEL sets the diagnostics level; an unknown one keeps warn', () => {
    expect(telemetry({ OTEL_LOG_LEVEL: 'DEBUG' }).diagLogLevel).toBe(DiagLogLevel.DEBUG);
    expect(telemetry({ OTEL_LOG_LEVEL: 'none' }).diagLogLevel).toBe(DiagLogLevel.NONE);
    const c = telemetry({ OTEL_LOG_LEVEL: 'loud' });
    expect(c.diagLogLevel).toBe(DiagLogLevel.WARN);
    expect(c.warnings).toEqual([expect.stringContaining('OTEL_LOG_LEVEL')]);
  });

  it('refuses endpoints that are not URLs, naming them', () => {
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'collector:4318' })).toThrow(/OTEL_EXPORTER_OTLP_TRACES_ENDPOINT/);
  });

  it('METRICS_HOST: all IPv4 interfaces by default; an address or a name otherwise', () => {
    expect(loadConfig({}).metrics).toEqual({ port: 9464, host: '0.0.0.0' });
    expect(loadConfig({ METRICS_HOST: '::' }).metrics.host).toBe('::');
    expect(() => loadConfig({ METRICS_HOST: 'a host' })).toThrow(/METRICS_HOST must be an IP address or a host name/);
  });
});

describe('parseResourceAttributes', () => {
  it('decodes percent-encoded keys and values, and skips empty entries', () => {
    expect(parseResourceAttributes('a=1, b%2Cc = x%3Dy ,,')).toEqual({ a: '1', 'b,c': 'x=y' });
  });
  it('throws on an entry that is not key=value or not valid percent-encoding', () => {
    expect(() => parseResourceAttributes('a')).toThrow(/not key=value/);
    expect(() => parseResourceAttributes('=x')).toThrow(/not key=value/);
    expect(() => parseResourceAttributes('a=%E0%A4%A')).toThrow(/percent-encoding/);
  });
});

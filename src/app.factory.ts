import { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import helmet from 'helmet';
import type { Server } from 'node:http';
import { Logger as PinoLogger } from 'nestjs-pino';
import { AppModule } from './app.module';
import { HttpExceptionFilter } from './common/http-exception.filter';
import { inlineRequestBodies } from './common/openapi-document';
import { createValidationPipe } from './common/validation.pipe';
import { AppConfig } from './config/app-config';
import { httpServerDurationMiddleware } from './telemetry/http-server-metrics';
import { httpServerDurationSource } from './telemetry/http-server-policy';

/** JSON bodies are prompts plus a few fields: 4000 characters of UTF-8 fit easily. */
export const JSON_BODY_LIMIT = '64kb';

/**
 * Builds the fully configured application (pipes, filters, security headers, Swagger) without
 * listening, so `main.ts` and the e2e tests run exactly the same app.
 */
export async function createApp(config: AppConfig, options: { logger?: false } = {}): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config), {
    bodyParser: false,
    // Shutdown must not wait for idle keep-alive sockets or SSE streams once the pipeline has drained.
    forceCloseConnections: true,
    bufferLogs: options.logger !== false,
    logger: options.logger,
  });
  // Structured JSON logs with trace ids; tests pass `logger: false` to keep their output quiet.
  if (options.logger !== false) app.useLogger(app.get(PinoLogger));
  configureApp(app, config);
  return app;
}

export function configureApp(app: NestExpressApplication, config: AppConfig): INestApplication {
  applyServerTimeouts(app.getHttpServer() as Server, config.http);
  // Without span export http.server.request.duration comes from this middleware, not from the
  // HTTP instrumentation (see httpServerDurationSource); first, so it times every other middleware.
  if (httpServerDurationSource(config) === 'middleware') app.use(httpServerDurationMiddleware());
  app.useBodyParser('json', { limit: JSON_BODY_LIMIT, strict: true });
  app.set('trust proxy', 'loopback');
  app.disable('x-powered-by');
  app.use(
    helmet({
      contentSecurityPolicy: {
        directives: {
          // Swagger UI at /docs needs inline scripts/styles from its own bundle.
          'script-src': ["'self'", "'unsafe-inline'"],
          'img-src': ["'self'", 'data:', 'blob:'],
          // helmet's default would make a browser fetch every asset of /docs over https: the service
          // speaks plain HTTP (TLS ends at a proxy, if any), so on any host but localhost the page
          // stayed blank. Whoever terminates TLS decides about upgrades.
          'upgrade-insecure-requests': null,
        },
      },
      crossOriginResourcePolicy: { policy: 'cross-origin' },
    }),
  );
  if (config.http.corsOrigins.length > 0) {
    app.enableCors({
      origin: config.http.corsOrigins.includes('*') ? true : config.http.corsOrigins,
      exposedHeaders: ['Location', 'Retry-After', 'Preference-Applied'],
    });
  }
  app.useGlobalPipes(createValidationPipe());
  app.useGlobalFilters(new HttpExceptionFilter());

  const document = inlineRequestBodies(
    SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('hybrid-image-search')
      .setDescription(
        'Generate images with Gemini, store them, and extract their dominant colours. ' +
          'Errors are always `{ statusCode, code, message }`.',
      )
      .setVersion(config.version)
      .addApiKey({ type: 'apiKey', name: 'x-api-key', in: 'header', description: 'One of API_KEYS (also accepted as `Authorization: Bearer <key>`); only checked when API_KEYS is set' }, 'api-key')
      .build(),
    ),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json', customSiteTitle: 'hybrid-image-search API' });
  return app;
}

/**
 * Node waits 300 s for a request's body by default: a client that sends headers and then trickles
 * (or never finishes) the body holds a socket that long. The request must now arrive within
 * `requestTimeoutMs` (headers within `headersTimeoutMs`), else Node answers 408 and closes the
 * connection. Both cover receiving the request only; a long response (an SSE stream) is not cut.
 * Node checks them every `connectionsCheckingInterval` (30 s by default, read when the server
 * starts listening), so that is tightened to match.
 */
export function applyServerTimeouts(server: Server, http: AppConfig['http']): void {
  server.requestTimeout = http.requestTimeoutMs;
  server.headersTimeout = http.headersTimeoutMs;
  server.keepAliveTimeout = http.keepAliveTimeoutMs;
  // A documented option of http.createServer; as a property it is read at 'listening' (not typed).
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.max(50, Math.min(1_000, Math.floor(http.headersTimeoutMs / 4)));
}

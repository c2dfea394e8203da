import { Module } from '@nestjs/common';
import { createGenAiClient, GEMINI_CLIENT_FACTORY } from './gemini.client';
import { DEFAULT_BACKOFF, GEMINI_BACKOFF, GeminiService } from './gemini.service';

/**
 * Gemini image generation. Needs the global `AppConfig` (ConfigModule.forRoot) and `AppMetrics`
 * (TelemetryModule). Tests change its behaviour through those and by overriding
 * GEMINI_CLIENT_FACTORY (a fake SDK) or GEMINI_BACKOFF (shorter waits) with `overrideProvider`.
 */
@Module({
  providers: [
    GeminiService,
    { provide: GEMINI_CLIENT_FACTORY, useValue: createGenAiClient },
    { provide: GEMINI_BACKOFF, useValue: DEFAULT_BACKOFF },
  ],
  exports: [GeminiService],
})
export class GeminiModule {}

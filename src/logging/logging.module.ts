import { Module } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import { AppConfig } from '../config/app-config';
import { pinoHttpOptions } from './pino-options';

/**
 * Structured JSON logging (pino via nestjs-pino) with the active span's trace ids. Import it in
 * AppModule and hand its logger to Nest: `app.useLogger(app.get(Logger))` with `Logger` from
 * `nestjs-pino` (create the app with `bufferLogs: true` so start-up lines go through it too).
 * Classes keep using `new Logger(Name)` from `@nestjs/common`.
 */
@Module({
  imports: [
    LoggerModule.forRootAsync({
      inject: [AppConfig],
      useFactory: (config: AppConfig) => ({ pinoHttp: pinoHttpOptions(config) }),
    }),
  ],
  exports: [LoggerModule],
})
export class LoggingModule {}

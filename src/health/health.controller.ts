import { Controller, Get } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import { Public } from '../auth/public.decorator';
import { HealthCheck, HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import { QueueHealthIndicator, DatabaseHealthIndicator, PaletteHealthIndicator, ShutdownHealthIndicator, StorageHealthIndicator } from './indicators';

@ApiTags('health')
@Public()
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly storage: StorageHealthIndicator,
    private readonly database: DatabaseHealthIndicator,
    private readonly palette: PaletteHealthIndicator,
    private readonly shutdown: ShutdownHealthIndicator,
    private readonly queue: QueueHealthIndicator,
  ) {}

  @Get('live')
  @ApiOperation({ summary: 'Liveness: 200 while the process can serve (no dependency checks)' })
  @ApiOkResponse({ schema: { example: { status: 'ok' } } })
  live(): { status: 'ok'; uptimeSeconds: number } {
    return { status: 'ok', uptimeSeconds: Math.round(process.uptime()) };
  }

  @Get('ready')
  @HealthCheck()
  @ApiOperation({ summary: 'Readiness: storage, database, palette pool, the queue (Redis, when configured); 503 when any is down or while shutting down' })
  @ApiServiceUnavailableResponse({ description: 'Not ready; `details` says which dependency is down' })
  ready(): Promise<HealthCheckResult> {
    return this.health.check([
      () => this.shutdown.check(),
      () => this.database.check(),
      () => this.storage.check(),
      () => this.palette.check(),
      () => this.queue.check(),
    ]);
  }
}

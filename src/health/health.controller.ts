import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { Public } from '../auth/public.decorator';
import { HealthCheck, HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import { LIVENESS_SCHEMA, NOT_READY_SCHEMA, READY_SCHEMA } from './health.openapi';
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
  @ApiResponse({ status: 200, description: 'The process serves', content: { 'application/json': { schema: LIVENESS_SCHEMA } } })
  live(): { status: 'ok'; uptimeSeconds: number } {
    return { status: 'ok', uptimeSeconds: Math.round(process.uptime()) };
  }

  @Get('ready')
  @HealthCheck({ swaggerDocumentation: false })
  @ApiOperation({ summary: 'Readiness: storage, database, palette pool, the queue (Redis, when configured); 503 when any is down or while shutting down' })
  @ApiResponse({ status: 200, description: 'Every dependency is up', content: { 'application/json': { schema: READY_SCHEMA } } })
  @ApiResponse({ status: 503, description: 'Not ready; `error` says which dependency is down', content: { 'application/json': { schema: NOT_READY_SCHEMA } } })
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

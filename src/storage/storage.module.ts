import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { createStorageDriver } from './storage-driver.factory';
import { STORAGE_DRIVER, type StorageDriver } from './storage.driver';
import { StorageService } from './storage.service';

/**
 * Image storage (S3 or local folder). Needs the global ConfigModule and TelemetryModule.
 * The driver is closed in onApplicationShutdown, which Nest runs after every module's
 * onModuleDestroy / beforeApplicationShutdown: drain uploads in one of those.
 */
@Module({
  providers: [{ provide: STORAGE_DRIVER, useFactory: createStorageDriver, inject: [AppConfig] }, StorageService],
  exports: [StorageService],
})
export class StorageModule implements OnApplicationShutdown {
  constructor(@Inject(STORAGE_DRIVER) private readonly driver: StorageDriver) {}

  async onApplicationShutdown(): Promise<void> {
    await this.driver.close();
  }
}

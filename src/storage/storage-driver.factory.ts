import { Logger } from '@nestjs/common';
import type { AppConfig } from '../config/app-config';
import { LocalDriver } from './local.driver';
import { S3Driver } from './s3.driver';
import type { StorageDriver } from './storage.driver';

/** S3 when `S3_BUCKET` is set, else the local folder `${DATA_DIR}` (keys start with `images/`). */
export function createStorageDriver(config: AppConfig): StorageDriver {
  const logger = new Logger('StorageModule');
  if (config.s3) {
    const where = config.s3.endpoint ? ` at ${new URL(config.s3.endpoint).origin}` : '';
    logger.log(`Images go to S3 bucket "${config.s3.bucket}"${where}`);
    return new S3Driver(config.s3);
  }
  const driver = new LocalDriver(config.dataDir);
  logger.log(`Images go to the local folder ${driver.root}`);
  return driver;
}

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';

/** The static credentials s3rver accepts (it verifies SigV4 signatures against them). */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

/**
 * Puts s3rver's credentials where the AWS default credential chain looks first. Tests only:
 * application code never reads process.env outside src/config.
 */
export function useS3rverCredentials(): void {
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
  // Never fall through to the EC2 metadata endpoint (a network call to another host).
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
}

export interface S3rverHandle {
  /** `http://127.0.0.1:<port>`: use with forcePathStyle. */
  readonly endpoint: string;
  readonly port: number;
  readonly bucket: string;
  /** Where the objects live; kept across stop()/restart(). */
  readonly directory: string;
  /** Stops listening and drops open connections (simulates an outage); data stays. */
  stop(): Promise<void>;
  /** Starts again on the same port with the same data. */
  restart(): Promise<void>;
  /** stop() and delete the data directory. */
  dispose(): Promise<void>;
}

/** A real S3-protocol server on 127.0.0.1 (ephemeral port unless given), with `bucket` created. */
export async function startS3rver(options: { bucket: string; port?: number; directory?: string }): Promise<S3rverHandle> {
  const { bucket } = options;
  const ownsDirectory = options.directory === undefined;
  const directory = options.directory ?? (await mkdtemp(join(tmpdir(), 's3rver-')));
  let server: S3rver | undefined;

  const listen = async (port: number): Promise<number> => {
    const instance = new S3rver({
      address: '127.0.0.1',
      port,
      directory,
      silent: true,
      configureBuckets: [{ name: bucket }],
    });
    const address = await instance.run();
    server = instance;
    return address.port;
  };

  const stop = async (): Promise<void> => {
    const running = server;
    if (!running) return;
    server = undefined;
    const closed = running.close();
    // close() alone waits for in-flight keep-alive requests; an outage should cut them.
    running.httpServer?.closeAllConnections();
    await closed;
  };

  const port = await listen(options.port ?? 0);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    bucket,
    directory,
    stop,
    restart: async () => {
      await stop();
      await listen(port);
    },
    dispose: async () => {
      await stop();
      if (ownsDirectory) await rm(directory, { recursive: true, force: true });
    },
  };
}

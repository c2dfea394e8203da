import { Injectable } from '@nestjs/common';

/** Set once SIGTERM/SIGINT arrives: readiness answers 503 from then on, before the server stops accepting. */
@Injectable()
export class ShutdownState {
  private since: Date | null = null;

  begin(): void {
    this.since ??= new Date();
  }

  get shuttingDown(): boolean {
    return this.since !== null;
  }
}

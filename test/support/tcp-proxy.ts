import { createServer, Server, Socket } from 'node:net';

/**
 * What the proxy does with connections:
 * - `forward`: passes bytes both ways to the target (the default);
 * - `refuse`: resets every new connection at once, as a port with nothing listening would;
 * - `hang`: accepts new connections and never answers, as a dead host or a black-holed network.
 */
export type ProxyMode = 'forward' | 'refuse' | 'hang';

export interface TcpProxy {
  /** The loopback port the proxy listens on. */
  readonly port: number;
  mode: ProxyMode;
  /** `url` (e.g. a postgres:// or redis:// URL of the target) with host and port of the proxy. */
  via(url: string): string;
  /** Resets every open connection, forwarded or hanging: the peer sees ECONNRESET. */
  cutAll(): void;
  /** Cuts every connection and stops listening. */
  close(): Promise<void>;
}

/**
 * A TCP proxy on 127.0.0.1:<free port> in front of `target`, so a test can make one client's
 * server unreachable, or its connections die, without touching the server others share.
 */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  };
  let mode: ProxyMode = 'forward';

  const server: Server = createServer((client) => {
    track(client);
    if (mode === 'refuse') {
      client.resetAndDestroy();
      return;
    }
    if (mode === 'hang') return;
    const upstream = new Socket();
    track(upstream);
    upstream.connect(target.port, target.host);
    client.pipe(upstream);
    upstream.pipe(client);
    // A clean end travels through the pipes; once either side is gone, so is the other.
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as { port: number };

  const cutAll = () => {
    for (const socket of sockets) if (!socket.destroyed) socket.resetAndDestroy();
  };

  return {
    port,
    get mode() {
      return mode;
    },
    set mode(next: ProxyMode) {
      mode = next;
    },
    via(url: string) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    cutAll,
    async close() {
      cutAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

import { readFileSync } from 'node:fs';

/** `addr:port` of every listening TCP socket of this machine on `port`, from /proc/net/tcp{,6}. */
export function listeningAddresses(port: number): string[] {
  const found: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.trim().split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      const [addrHex, portHex] = local.split(':');
      if (state !== '0A' || parseInt(portHex, 16) !== port) continue; // 0A = LISTEN
      found.push(`${addrHex.length === 8 ? ipv4(addrHex) : `[${addrHex}]`}:${port}`);
    }
  }
  return found;
}

/** /proc/net/tcp writes the IPv4 address as one little-endian 32-bit hex number. */
function ipv4(hex: string): string {
  return [3, 2, 1, 0].map((i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join('.');
}

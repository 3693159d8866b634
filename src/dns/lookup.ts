// The `lookup` we give dgram sockets. We only ever send to IP literals; dgram's default (dns.lookup)
// answers those on the next tick, delaying every send — measured at a third of the UDP throughput.

// Callers pass IP literals only (a reply's source address, or a validated upstream): the family is
// told by the colon, without net.isIP's regular expressions on every datagram; anything else would
// fail in the socket layer (EINVAL) rather than be resolved.
export function ipLiteralLookup(
  hostname: string,
  _options: unknown,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  callback(null, hostname, hostname.includes(':') ? 6 : 4);
}

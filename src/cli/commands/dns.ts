// `drover dns`: the standalone DNS server (drop-in for the rancher-dns binary) serving an answers file.
import { Command, InvalidArgumentError } from 'commander';
import { z } from 'zod';
import { Registry } from 'prom-client';
import { errorMessage, StartupError } from '../../common/errors.js';
import { countUnexpectedErrorsIn } from '../../common/last-resort.js';
import { assertCanListen, listenError } from '../../common/listen.js';
import { createLogger } from '../../common/log.js';
import { UDP_TRANSPORTS } from '../../dns/server.js';
import { parseListenAddress, StandaloneDns } from '../../dns/standalone.js';

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function positiveNumber(what: string, integer: boolean) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) {
      throw new InvalidArgumentError(`${what} must be a ${integer ? 'non-negative integer' : 'non-negative number'}`);
    }
    return n;
  };
}

const DnsOpts = z.object({
  answers: z.string().min(1),
  listen: z.array(z.string()).default([]),
  ttl: z.number().int().min(0),
  recurserTimeout: z.number().positive(),
  reloadListen: z.string(),
  cacheSize: z.number().int().min(0),
  cacheMaxTtl: z.number().int().min(0),
  rejectLoopbackUpstreams: z.boolean().default(false),
  udpTransport: z.enum(UDP_TRANSPORTS),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
});

export function registerDnsCommand(program: Command): void {
  program
    .command('dns')
    .description('serve a Rancher answers file over DNS (UDP and TCP): a drop-in for the rancher-dns binary')
    .requiredOption(
      '--answers <file>',
      'answers file, JSON or YAML: { "<client ip>" | "default": { search, recurse, authoritative, a, cname, ptr, txt } }; ' +
        're-read on SIGHUP and on POST /v1/reload (a bad file keeps the last good answers)',
    )
    .option(
      '--listen <addr>',
      'address to answer on, UDP and TCP: host:port, [v6]:port, :port or host (port 53); repeat for several (default: 0.0.0.0:53)',
      collect,
    )
    .option('--ttl <seconds>', 'TTL of answers that do not set their own', positiveNumber('--ttl', true), 1)
    .option(
      '--recurser-timeout <seconds>',
      'how long to wait for each upstream resolver before trying the next (fractions allowed)',
      positiveNumber('--recurser-timeout', false),
      2,
    )
    .option(
      '--reload-listen <addr>',
      'loopback address of the HTTP endpoint: POST /v1/reload, GET /metrics, GET /healthz; "off" disables it',
      '127.0.0.1:8113',
    )
    .option('--cache-size <entries>', 'most upstream answers kept in the cache (0 disables caching)', positiveNumber('--cache-size', true), 10000)
    .option(
      '--cache-max-ttl <seconds>',
      'longest time an upstream answer is cached (its own TTL applies when shorter)',
      positiveNumber('--cache-max-ttl', true),
      300,
    )
    .option('--reject-loopback-upstreams', 'never recurse to 127.0.0.0/8 or ::1 (by default only this server\'s own addresses and 169.254.169.250 are refused)')
    .option(
      '--udp-transport <kind>',
      'batched (recvmmsg/sendmmsg through native/udp-batch: ~2x the queries/s), dgram (node\'s socket), ' +
        'or auto (batched when the addon is built, else dgram)',
      process.env.DROVER_DNS_UDP ?? 'auto',
    )
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent', process.env.DROVER_LOG_LEVEL ?? 'info')
    .addHelpText(
      'after',
      `
Lookups try the client's section (by source address) with its search list, then "default" with the
client's search list, then "default" with its own. Names under default's "authoritative" suffixes that
do not exist get NXDOMAIN; anything else is recursed to the client's "recurse" list, then default's.

Environment: DROVER_DNS_UDP sets the default of --udp-transport; DROVER_UDP_BATCH_ADDON the path of
the built addon (default: native/udp-batch/build/Release/udp_batch.node in the checkout or image).

Signals: SIGHUP reloads the answers file; SIGTERM and SIGINT stop gracefully.

Example:
  drover dns --answers /etc/rancher-dns/answers.json --listen 169.254.169.250:53 --ttl 1
  kill -HUP <pid>   or   curl -X POST http://127.0.0.1:8113/v1/reload`,
    )
    .action(async (raw: unknown) => {
      const parsed = DnsOpts.safeParse(raw);
      if (!parsed.success) {
        console.error(`drover dns: ${z.prettifyError(parsed.error)}`);
        process.exitCode = 2;
        return;
      }
      const o = parsed.data;
      const log = createLogger({ level: o.logLevel });
      let dns: StandaloneDns;
      const registry = new Registry();
      countUnexpectedErrorsIn(registry);
      let listen: ReturnType<typeof parseListenAddress>[] = [];
      try {
        listen = (o.listen.length > 0 ? o.listen : ['0.0.0.0:53']).map((l) => parseListenAddress(l, 53));
        const reloadListen = o.reloadListen === 'off' || o.reloadListen === '' ? undefined : parseListenAddress(o.reloadListen, 8113);
        // Fail fast with one line naming the address (the batched UDP addon's errors do not name it).
        await assertCanListen([
          ...listen.map((l) => ({ at: { host: l.address, port: l.port }, flag: '--listen', udp: true })),
          ...(reloadListen ? [{ at: { host: reloadListen.address, port: reloadListen.port }, flag: '--reload-listen' }] : []),
        ]);
        dns = await StandaloneDns.start({
          registry,
          answersPath: o.answers,
          listen,
          ttl: o.ttl,
          recurserTimeoutMs: Math.round(o.recurserTimeout * 1000),
          reloadListen,
          log,
          cacheMaxEntries: o.cacheSize,
          cacheMaxTtl: o.cacheMaxTtl,
          rejectLoopbackUpstreams: o.rejectLoopbackUpstreams,
          udpTransport: o.udpTransport,
        });
      } catch (err) {
        const first = listen[0];
        const oneLine = err instanceof StartupError ? err : first ? listenError(err, { host: first.address, port: first.port }, '--listen') : undefined;
        if (oneLine) {
          log.debug({ err }, 'drover dns could not start');
          log.flush();
          process.stderr.write(`drover: ${oneLine.message}\n`);
          process.exitCode = 1;
          return;
        }
        log.fatal({ err: errorMessage(err) }, 'drover dns could not start');
        log.flush();
        process.exitCode = 1;
        return;
      }
      const onHup = (): void => {
        void dns.reload();
      };
      let stopping = false;
      const onStop = (signal: NodeJS.Signals): void => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'stopping');
        process.off('SIGHUP', onHup);
        void dns.close().then(() => {
          process.off('SIGTERM', onStop);
          process.off('SIGINT', onStop);
          log.flush();
        });
      };
      process.on('SIGHUP', onHup);
      process.on('SIGTERM', onStop);
      process.on('SIGINT', onStop);
    });
}

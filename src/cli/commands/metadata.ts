// `drover metadata`: the metadata service in standalone mode (drop-in for the original rancher-metadata).
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { ValidationError } from '../../common/errors.js';
import { createLogger } from '../../common/log.js';
import { DEFAULT_RELOAD_LISTEN, parseHeaderSpec, parseListenAddress, runStandalone } from '../../metadata/standalone.js';
import { Registry } from 'prom-client';
import { countUnexpectedErrorsIn } from '../../common/last-resort.js';
import { assertCanListen, rethrowListenError, type BindTest } from '../../common/listen.js';
import { onShutdown } from '../shutdown.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const MetadataCommandOptions = z.object({
  answers: z.string().min(1),
  listen: z.string().min(1),
  /** A string, or `false` from `--no-reload-listen`. */
  reloadListen: z.union([z.string().min(1), z.literal(false)]),
  trustForwardedFor: z.boolean().default(false),
  requireHeader: z.string().optional(),
  logLevel: z.enum(LOG_LEVELS).default('info'),
});

const HELP_AFTER = `
The answers file maps API versions to clients to trees, exactly as the original's:
  {"2016-07-29": {"default": {...}, "10.42.0.5": {...}}, "2015-12-19": {...}}
A client (identified by the source address of its connection) gets its own entry, merged over the
top-level keys of "default"; anyone else gets "default". Without a "latest" version, the highest one
is served as latest.

Reload:  kill -HUP <pid>   or   curl -X POST http://127.0.0.1:8112/v1/reload   (answers "OK", or 500
         with the reason; a file that fails to load is logged and the last good answers stay served).
Metrics: GET http://<reload address>/metrics (Prometheus).

Examples:
  drover metadata --answers /etc/drover/answers.yml --listen 169.254.169.250:80
  drover metadata --answers answers.json --listen 127.0.0.1:8080 --require-header Metadata-Flavor=Rancher`;

export function registerMetadataCommand(program: Command): void {
  program
    .command('metadata')
    .summary('serve a Rancher-format answers file as rancher-metadata (standalone mode)')
    .description(
      'Serve a Rancher-format answers file (JSON or YAML) over HTTP, compatible with rancher-metadata: ' +
        'the 2015-07-25, 2015-12-19, 2016-07-29 and latest API versions, plain text / JSON / YAML by Accept ' +
        'header, long polling (?wait=true&value=…&maxWait=…) and ETag waits (?wait_for_change=true&last_etag=…).',
    )
    .requiredOption('--answers <file>', 'answers file to serve (.json, or YAML for .yml/.yaml and anything else); required')
    .option(
      '--listen <addr>',
      'address to serve metadata on: HOST:PORT, :PORT for every interface, or [IPv6]:PORT',
      ':80',
    )
    .option(
      '--reload-listen <addr>',
      'loopback HOST:PORT for the reload endpoint (POST /v1/reload) and GET /metrics',
      DEFAULT_RELOAD_LISTEN,
    )
    .option('--no-reload-listen', 'do not open the reload endpoint (SIGHUP still reloads)')
    .option(
      '--trust-forwarded-for',
      'take the client address from X-Forwarded-For (its last entry). Only behind a trusted proxy: by default ' +
        'requests carrying the header are refused with 400, because it would let any client pose as another',
      false,
    )
    .option(
      '--require-header <name=value>',
      'refuse (403) requests that do not carry this header with exactly this value, e.g. Metadata-Flavor=Rancher',
    )
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default('info'))
    .addHelpText('after', HELP_AFTER)
    .action(async (raw: unknown) => {
      const parsed = MetadataCommandOptions.safeParse(raw);
      if (!parsed.success) {
        throw new ValidationError('InvalidOptions', `invalid options: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
      }
      const o = parsed.data;
      const log = createLogger({ level: o.logLevel }).child({ component: 'metadata' });
      const registry = new Registry();
      countUnexpectedErrorsIn(registry);
      // Fail fast with one line naming the address and its flag.
      const tests: BindTest[] = [];
      const main = parseListenAddress(o.listen);
      tests.push({ at: { host: main.host ?? '0.0.0.0', port: main.port }, flag: '--listen' });
      if (o.reloadListen !== false) {
        const r = parseListenAddress(o.reloadListen);
        tests.push({ at: { host: r.host ?? '127.0.0.1', port: r.port }, flag: '--reload-listen' });
      }
      await assertCanListen(tests);
      const handle = await runStandalone({
        registry,
        answersFile: o.answers,
        listen: o.listen,
        reloadListen: o.reloadListen === false ? null : o.reloadListen,
        trustForwardedFor: o.trustForwardedFor,
        requireHeader: o.requireHeader !== undefined ? parseHeaderSpec(o.requireHeader) : undefined,
        log,
      }).catch((err: unknown) => {
        const port = (err as { port?: unknown }).port;
        const t = tests.find((x) => x.at.port === port) ?? (tests[0] as BindTest);
        return rethrowListenError(err, t.at, t.flag);
      });
      onShutdown(log, () => handle.close());
    });
}

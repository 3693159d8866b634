// drover service lb-config <stack>/<service> [--file rancher-compose.yml]: a balancer's rules, shown in
// rancher-compose form (the stack exporter's own output, cut down to the service's lb_config) or replaced
// from a rancher-compose file's entry for the service (read by the stack importer's own parser, then
// PUT /v1/services/<id> {lbConfig}, which resolves and checks it like an import does).
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { Document, isMap, isScalar, parseDocument } from 'yaml';
import type { ApiClient } from '../api-client.js';
import { DroverError, ValidationError } from '../../common/errors.js';
import { parseRancherEntry } from '../../server/compose/parse.js';
import { fail as composeFail } from '../../server/compose/values.js';
import type { LbConfig } from '../../model/resources.js';
import { client, withConn, type ConnFlags } from './conn.js';

interface StackRow {
  id: string;
  name: string;
  answers?: Record<string, string>;
}
interface ServiceRow {
  id: string;
  name: string;
  kind: string;
}

/** `<stack>/<service>` → its two names. */
export function parseServiceRef(ref: string): { stack: string; service: string } {
  const m = /^([^/\s]+)\/([^/\s]+)$/.exec(ref);
  if (!m) throw new ValidationError('InvalidArgument', `"${ref}" is not <stack>/<service> (for example: shop/lb)`);
  return { stack: m[1] as string, service: m[2] as string };
}

async function findService(api: ApiClient, ref: string): Promise<{ stack: StackRow; service: ServiceRow }> {
  const names = parseServiceRef(ref);
  const stacks = await api.call<{ data: StackRow[] }>('GET', `/v1/stacks?name=${encodeURIComponent(names.stack)}`);
  const stack = stacks.data[0];
  if (!stack) throw new ValidationError('NotFound', `${ref}: no stack named "${names.stack}" (drover stack ls lists them)`);
  const services = await api.call<{ data: ServiceRow[] }>('GET', `/v1/services?stackId=${stack.id}`);
  const service = services.data.find((s) => s.name === names.service);
  if (!service) {
    const known = services.data.map((s) => s.name).join(', ');
    throw new ValidationError('NotFound', `${ref}: stack "${stack.name}" has no service "${names.service}" (its services: ${known || 'none'})`);
  }
  return { stack, service };
}

/**
 * The service's `lb_config` in a rancher-compose file, read by the stack importer's own code
 * (parseRancherEntry). Also returns the entry's other keys, which this command does not apply.
 */
export function readLbConfig(file: string, text: string, service: string, answers: Record<string, string>): { lbConfig: LbConfig; ignored: string[] } {
  const { entry, names } = parseRancherEntry(file, text, service, answers);
  if (!entry) composeFail({ file }, undefined, `has no entry for service "${service}" (entries: ${names.join(', ') || 'none'})`);
  if (!entry.lbConfig) composeFail({ file, service }, 'lb_config', 'is missing: give the balancer\'s rules as "lb_config: {port_rules: [...]}"');
  return { lbConfig: entry.lbConfig, ignored: entry.keys.filter((k) => k !== 'lb_config') };
}

/** The service's entry of an exported rancher-compose.yml with only its `lb_config` (styles kept). */
export function lbConfigYaml(rancherCompose: string, service: string): string | undefined {
  const doc = parseDocument(rancherCompose);
  const entry = doc.get(service, true);
  const lb = isMap(entry) ? entry.get('lb_config', true) : undefined;
  if (lb === undefined || isScalar(lb)) return undefined;
  const out = new Document({});
  out.setIn([service, 'lb_config'], lb);
  return out.toString({ lineWidth: 0 });
}

function fail(ref: string, err: unknown): never {
  if (err instanceof ValidationError) {
    // Ours (a ComposeError names file, service and field; the others name the service).
    process.stderr.write(`error: ${err.message}\n`);
    process.exit(1);
  }
  if (err instanceof DroverError) {
    // The API's answer: its message, with the field it names when the message does not start with it.
    const api = err.status >= 400 && err.status < 500;
    const field = api && err.fieldName && !err.message.startsWith(err.fieldName) ? `${err.fieldName}: ` : '';
    process.stderr.write(`error: ${api ? `${ref}: ` : ''}${field}${err.message}\n`);
    process.exit(err.status === 401 ? 3 : 1);
  }
  process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

export function registerServiceCommand(program: Command): void {
  const service = program.command('service').description("services: a balancer's rules");

  withConn(
    service
      .command('lb-config')
      .description("show a balancer's rules as rancher-compose YAML, or replace them with the lb_config of a rancher-compose file")
      .argument('<stack/service>', 'the balancer, by stack name and service name (e.g. shop/lb)')
      .option(
        '-f, --file <rancher-compose.yml>',
        "rancher-compose file whose entry for the service has the new lb_config; it replaces the rules whole (${VAR} takes the stack's answers)",
      ),
  )
    .addHelpText(
      'after',
      `
Without --file the current rules are printed as the service's rancher-compose entry (what
\`drover stack export\` writes), so the output can be edited and given back with --file. Only lb_config
is applied: other keys of the entry (scale, metadata, ...) are left as they are (use \`drover stack up\`).

Examples:
  drover service lb-config shop/lb                         # print the rules of balancer "lb" in stack "shop"
  drover service lb-config shop/lb > lb.yml                # edit lb.yml, then:
  drover service lb-config shop/lb --file lb.yml
  drover service lb-config shop/lb -f rancher-compose.yml  # the "lb" entry of the stack's own file`,
    )
    .action(async (ref: string, o: ConnFlags & { file?: string }) => {
      try {
        const api = client(o);
        const { stack, service: svc } = await findService(api, ref);
        if (svc.kind !== 'loadBalancerService') {
          throw new ValidationError('NotABalancer', `${ref} is a ${svc.kind}, not a balancer (loadBalancerService): it has no lb_config`);
        }
        if (o.file) {
          const { lbConfig, ignored } = readLbConfig(o.file, readFileSync(o.file, 'utf8'), svc.name, stack.answers ?? {});
          if (ignored.length > 0) {
            process.stderr.write(`note: only lb_config is applied; ${ignored.join(', ')} in ${o.file} left as they are (drover stack up applies them)\n`);
          }
          const r = await api.call<{ lbConfig?: LbConfig }>('PUT', `/v1/services/${svc.id}`, { lbConfig });
          const n = r.lbConfig?.portRules.length ?? 0;
          process.stdout.write(`${ref}: lb_config replaced (${n} port rule${n === 1 ? '' : 's'})\n`);
          return;
        }
        const exported = await api.call<{ rancherComposeConfig: string }>('POST', `/v1/stacks/${stack.id}?action=exportconfig`);
        process.stdout.write(lbConfigYaml(exported.rancherComposeConfig, svc.name) ?? `${svc.name}:\n  lb_config:\n    port_rules: []\n`);
      } catch (err) {
        fail(ref, err);
      }
    });
}

// Balancer references: port rules name their target service (`<service>` in the balancer's stack, or
// `<stack>/<service>`) and certificates go by name or id. Both are resolved to ids when a balancer is
// created, from compose files or through the API; only the wording of the errors differs (the field
// as the user wrote it: `lb_config.port_rules[0].service` in rancher-compose.yml, `lbConfig.portRules[0].service`
// in an API body).
import type { Tx } from '../db/store.js';
import type { LbConfig, Service, Stack } from '../../model/resources.js';

/** A service by reference: `<service>` in `stack`, or `<stack>/<service>` in the same environment. */
export function findService(tx: Tx, stack: Stack, ref: string): Service | undefined {
  const [stackName, svcName] = ref.includes('/') ? (ref.split('/', 2) as [string, string]) : [stack.name, ref];
  const target = stackName === stack.name ? stack : tx.store.list('stack', { env_id: stack.environmentId, name: stackName })[0];
  if (!target) return undefined;
  return tx.store.list('service', { stack_id: target.id, name: svcName })[0];
}

export interface LbFieldNames {
  portRuleSourcePort(index: number): string;
  portRuleService(index: number): string;
  portRuleProtocol(index: number): string;
  portRuleSelector(index: number): string;
  certificates: string;
  defaultCertificate: string;
}

export const COMPOSE_LB_FIELDS: LbFieldNames = {
  portRuleSourcePort: (i) => `lb_config.port_rules[${i}].source_port`,
  portRuleService: (i) => `lb_config.port_rules[${i}].service`,
  portRuleProtocol: (i) => `lb_config.port_rules[${i}].protocol`,
  portRuleSelector: (i) => `lb_config.port_rules[${i}].selector`,
  certificates: 'lb_config.certs',
  defaultCertificate: 'lb_config.default_cert',
};

export const API_LB_FIELDS: LbFieldNames = {
  portRuleSourcePort: (i) => `lbConfig.portRules[${i}].sourcePort`,
  portRuleService: (i) => `lbConfig.portRules[${i}].service`,
  portRuleProtocol: (i) => `lbConfig.portRules[${i}].protocol`,
  portRuleSelector: (i) => `lbConfig.portRules[${i}].selector`,
  certificates: 'lbConfig.certificateIds',
  defaultCertificate: 'lbConfig.defaultCertificateId',
};

/** The balancer's own health check listens there (HAProxy `listen default`, `bind *:42`), as in the original. */
export const RESERVED_LB_PORT = 42;

/**
 * Why port rule `index` cannot have `sourcePort`, or undefined when it can: 42 belongs to the balancer's
 * health check. One check for rancher-compose.yml (src/server/compose/rancher.ts) and the API.
 */
export function sourcePortProblem(index: number, sourcePort: number, target?: string): string | undefined {
  if (sourcePort !== RESERVED_LB_PORT) return undefined;
  return (
    `port ${RESERVED_LB_PORT} is reserved for the balancer's health check (HAProxy's "listen default" binds *:${RESERVED_LB_PORT}); ` +
    `give port rule ${index}${target ? ` (to ${target})` : ''} another source port`
  );
}

/**
 * The config with every port rule's `serviceId` and every certificate as an id. A rule that gives a
 * `serviceId` without a name must point at a service of the same environment; no rule may listen on
 * RESERVED_LB_PORT. `fail(field, message, code)` makes the error to throw (`code` is set for problems
 * that are not references: `ReservedPort`).
 */
export function resolveLbConfig(
  tx: Tx,
  stack: Stack,
  lb: LbConfig,
  fields: LbFieldNames,
  fail: (field: string, message: string, code?: string) => Error,
): LbConfig {
  lb.portRules.forEach((r, i) => {
    const problem = sourcePortProblem(i, r.sourcePort, r.service ?? r.selector ?? r.serviceId);
    if (problem) throw fail(fields.portRuleSourcePort(i), problem, 'ReservedPort');
    // Refused by name rather than stored and left out by the agent (render.ts would skip them with a warning).
    if (r.protocol === 'udp') {
      throw fail(fields.portRuleProtocol(i), `port rule ${i}: protocol udp is not supported (HAProxy cannot proxy UDP); use http, https, tcp, tls or sni`, 'Unsupported');
    }
    if (r.selector !== undefined) {
      throw fail(fields.portRuleSelector(i), `port rule ${i}: selector rules are not supported yet; name the target with "service" (<service> or <stack>/<service>)`, 'Unsupported');
    }
  });
  const certs = tx.store.list('certificate', { env_id: stack.environmentId });
  const certId = (ref: string, field: string): string => {
    const c = certs.find((x) => x.id === ref || x.name === ref);
    if (!c) throw fail(field, `certificate "${ref}" does not exist (create it first: POST /v1/certificates)`);
    return c.id;
  };
  return {
    ...lb,
    portRules: lb.portRules.map((r, i) => {
      // An external service given only by hostname would need HAProxy's DNS resolution: refused by name.
      const servable = (target: Service): void => {
        if (target.kind === 'externalService' && target.hostname && target.externalIpAddresses.length === 0) {
          throw fail(
            fields.portRuleService(i),
            `port rule ${i}: service "${target.name}" is an external service given by hostname (${target.hostname}), which balancers cannot resolve yet; give it external IP addresses`,
            'Unsupported',
          );
        }
      };
      if (r.service) {
        const target = findService(tx, stack, r.service);
        if (!target) throw fail(fields.portRuleService(i), `service "${r.service}" does not exist`);
        servable(target);
        return { ...r, serviceId: target.id };
      }
      if (r.serviceId) {
        const target = tx.store.get('service', r.serviceId);
        if (!target || target.environmentId !== stack.environmentId) {
          throw fail(fields.portRuleService(i), `service ${r.serviceId} does not exist in this environment`);
        }
        servable(target);
      }
      return r;
    }),
    certificateIds: lb.certificateIds.map((c) => certId(c, fields.certificates)),
    ...(lb.defaultCertificateId ? { defaultCertificateId: certId(lb.defaultCertificateId, fields.defaultCertificate) } : {}),
  };
}

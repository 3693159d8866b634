// How each resource looks in the API: type, links, actions, hidden fields.
import type { ResourceDef } from './http.js';
import type { Store } from '../db/store.js';
import {
  Certificate,
  Container,
  ContainerLink,
  Environment,
  Host,
  Service,
  ServiceLink,
  Stack,
} from '../../model/resources.js';
import type { z } from 'zod';
import { certificateExpiry } from '../domain/certificates.js';

const str = (v: unknown) => String(v);

export const ENVIRONMENT: ResourceDef = {
  type: 'environment',
  collection: 'environments',
  hide: (d) => {
    const network = { ...(d.network as Record<string, unknown>) };
    delete network.ipsecPsk;
    return { ...d, network };
  },
  links: (d) => ({
    hosts: `hosts?environmentId=${str(d.id)}`,
    stacks: `stacks?environmentId=${str(d.id)}`,
    services: `services?environmentId=${str(d.id)}`,
    containers: `containers?environmentId=${str(d.id)}`,
    watch: `environments/${str(d.id)}/watch`,
  }),
};

export const HOST: ResourceDef = {
  type: 'host',
  collection: 'hosts',
  actions: (d) => [d.state === 'active' ? 'deactivate' : 'activate', ...(d.certificateRevoked === true ? [] : ['revokecertificate']), 'stats'],
  links: (d) => ({ containers: `containers?hostId=${str(d.id)}`, environment: `environments/${str(d.environmentId)}` }),
};

export const STACK: ResourceDef = {
  type: 'stack',
  collection: 'stacks',
  actions: () => ['exportconfig', 'addservices', 'up'],
  links: (d) => ({ services: `services?stackId=${str(d.id)}`, environment: `environments/${str(d.environmentId)}` }),
};

export const SERVICE: ResourceDef = {
  type: 'service',
  collection: 'services',
  hide: (d) => ({ ...d, type: d.kind }),
  actions: (d) => {
    if (d.upgrade) return d.state === 'upgrading' ? ['rollback'] : ['finishupgrade', 'rollback'];
    const runs = d.kind === 'service' || d.kind === 'loadBalancerService';
    const base = [d.state === 'inactive' ? 'activate' : 'deactivate', 'setservicelinks'];
    return runs && d.state === 'active' && !d.restart ? [...base, 'upgrade', 'restart'] : base;
  },
  links: (d) => ({
    stack: `stacks/${str(d.stackId)}`,
    instances: `containers?serviceId=${str(d.id)}`,
    serviceLinks: `servicelinks?serviceId=${str(d.id)}`,
  }),
};

export const CONTAINER: ResourceDef = {
  type: 'container',
  collection: 'containers',
  actions: (d) => [...(d.serviceId ? [] : d.desiredState === 'running' ? ['stop'] : ['start']), ...(d.hostId ? ['execute', 'stats'] : [])],
  links: (d) => ({
    ...(d.hostId ? { host: `hosts/${str(d.hostId)}` } : {}),
    ...(d.serviceId ? { service: `services/${str(d.serviceId)}` } : {}),
  }),
};

export const SERVICE_LINK: ResourceDef = {
  type: 'serviceLink',
  collection: 'servicelinks',
  links: (d) => ({ service: `services/${str(d.serviceId)}`, consumedService: `services/${str(d.consumedServiceId)}` }),
};

export const CONTAINER_LINK: ResourceDef = { type: 'containerLink', collection: 'containerlinks' };

export const CERTIFICATE: ResourceDef = {
  type: 'certificate',
  collection: 'certificates',
  // The key never leaves the server; `expired` / `expiresInDays` are computed when read (not stored).
  hide: (d) => {
    const { key: _key, ...rest } = d;
    return { ...rest, ...certificateExpiry(d as { expiresAt?: string }) };
  },
};

export const REGISTRATION_TOKEN: ResourceDef = {
  type: 'registrationToken',
  collection: 'registrationtokens',
  actions: (d) => (d.state === 'active' ? ['deactivate'] : []),
};

export const API_KEY: ResourceDef = {
  type: 'apiKey',
  collection: 'apikeys',
  actions: (d) => (d.state === 'active' ? ['deactivate'] : ['activate']),
};

const keys = (s: z.ZodObject) => Object.keys(s.shape);

export const FIELDS = {
  environment: [...keys(Environment), 'revision'],
  host: keys(Host),
  stack: keys(Stack),
  service: keys(Service),
  container: keys(Container),
  serviceLink: keys(ServiceLink),
  containerLink: keys(ContainerLink),
  certificate: keys(Certificate),
  registrationToken: ['id', 'environmentId', 'accessKey', 'state', 'created'],
  apiKey: ['id', 'name', 'role', 'environmentId', 'hostId', 'accessKey', 'state', 'created'],
};

/** The host record as the API shows it: with what its agent last reported. */
export function hostWithStatus(store: Store, h: Host): Host {
  const row = store.db.prepare('SELECT last_seen, applied, network FROM host_status WHERE host_id = ?').get(h.id) as
    | { last_seen: string | null; applied: string; network: string | null }
    | undefined;
  if (!row) return h;
  return {
    ...h,
    ...(row.last_seen ? { lastSeen: row.last_seen } : {}),
    applied: JSON.parse(row.applied) as Host['applied'],
    ...(row.network ? { network: JSON.parse(row.network) as Host['network'] } : {}),
  };
}

/** The environment as the API shows it: with its current revision (what agents sync to). */
export function environmentView(store: Store, e: Environment): Environment & { revision: number } {
  return { ...e, revision: store.revision(e.id) };
}

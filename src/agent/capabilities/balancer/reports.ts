// What this host reports for its balancer containers (pure): a balancer instance has no Docker container,
// so its observed state is its HAProxy's — running when it serves the last render, error (with HAProxy's
// message, or why it cannot start) otherwise; stopped or removed once the record asks for that and the
// HAProxy is gone. The health checker reads these like the runtime's reports (a service's health_check on
// port 42 checks the instance's HAProxy), and DNS/metadata show the balancer like any service.
import type { EnvState } from '../../../model/state.js';
import type { ContainerReport } from '../../../model/reports.js';
import { isBalancerInstance } from '../../../model/serving.js';
import type { BalancerInstanceState } from './controller.js';

/** The most characters of warnings carried in a report's message. */
const MAX_MESSAGE = 1000;

/**
 * One report per balancer container of this host whose state is known: `instances` are the HAProxies
 * the controller runs (or tried to); `unavailable` says why none can run here (HAProxy not installed).
 * A container wanted running with no instance yet (the controller has not reached it) is left out.
 */
export function balancerReports(
  state: EnvState,
  hostId: string,
  instances: ReadonlyMap<string, BalancerInstanceState>,
  unavailable?: string,
): ContainerReport[] {
  const out: ContainerReport[] = [];
  for (const c of state.containers.values()) {
    if (c.hostId !== hostId || c.serviceId === null || c.adopted) continue;
    if (!isBalancerInstance(c, state.services.get(c.serviceId))) continue;
    const inst = instances.get(c.id);
    if (inst) {
      const warn = inst.warnings?.length ? `rules left out: ${inst.warnings.join('; ')}` : '';
      const message = inst.state === 'error' ? (inst.message ?? 'HAProxy is not serving') : [inst.message, warn].filter(Boolean).join('; ');
      out.push({ id: c.id, state: inst.state, message: message.slice(0, MAX_MESSAGE) });
    } else if (c.desiredState === 'running' && unavailable !== undefined) {
      out.push({ id: c.id, state: 'error', message: unavailable });
    } else if (c.desiredState === 'stopped') {
      out.push({ id: c.id, state: 'stopped', message: '' });
    } else if (c.desiredState === 'removed') {
      out.push({ id: c.id, state: 'removed' });
    }
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

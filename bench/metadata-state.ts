// A large synthetic environment for the metadata benchmark: `containers` containers spread over services of
// 50 containers (plus one sidekick per service every 10th service), 20 hosts, 10 stacks, service links.
import { Container, Environment, Host, Service, ServiceLink, Stack } from '../src/model/resources.js';
import { emptyState, type EnvState } from '../src/model/state.js';

const CREATED = '2024-01-01T00:00:00.000Z';

export function ipOf(n: number): string {
  return `10.42.${Math.floor(n / 250)}.${(n % 250) + 2}`;
}

/** `selfIp`: the address given to container 0 (the benchmark client's own source address). */
export function largeState(containers: number, selfIp = '127.0.0.1'): EnvState {
  const env = Environment.parse({ id: 'e1', uuid: 'env-bench', name: 'Bench', state: 'active', network: {}, created: CREATED });
  const st = emptyState(env);
  st.revision = 1;
  const hosts = 20;
  const stacks = 10;
  const perService = 50;
  for (let h = 0; h < hosts; h++) {
    st.hosts.set(`h${h}`, Host.parse({
      id: `h${h}`, uuid: `uuid-h${h}`, environmentId: 'e1', name: `host-${h}`, hostname: `host-${h}.bench`,
      agentIpAddress: `192.168.1.${h + 1}`, labels: { zone: `z${h % 3}` }, state: 'active', agentState: 'active', created: CREATED,
    }));
  }
  for (let s = 0; s < stacks; s++) {
    st.stacks.set(`st${s}`, Stack.parse({ id: `st${s}`, uuid: `uuid-st${s}`, environmentId: 'e1', name: `Stack${s}`, state: 'active', created: CREATED }));
  }
  const services = Math.ceil(containers / perService);
  for (let i = 0; i < services; i++) {
    const sidekick = i % 10 === 0;
    st.services.set(`sv${i}`, Service.parse({
      id: `sv${i}`, uuid: `uuid-sv${i}`, environmentId: 'e1', stackId: `st${i % stacks}`, name: `svc${i}`, kind: 'service',
      state: 'active', scale: perService,
      launchConfig: {
        image: 'nginx', labels: { app: `svc${i}`, 'io.rancher.stack.name': `Stack${i % stacks}` },
        ports: [{ publicPort: 10000 + i, privatePort: 80, protocol: 'tcp' }],
      },
      secondaryLaunchConfigs: sidekick ? [{ name: 'side', image: 'busybox' }] : [],
      metadata: { team: `t${i % 7}`, weight: i },
      created: CREATED,
    }));
    if (i > 0) {
      st.serviceLinks.set(`sl${i}`, ServiceLink.parse({ id: `sl${i}`, environmentId: 'e1', serviceId: `sv${i}`, consumedServiceId: `sv${i - 1}`, name: 'upstream', created: CREATED }));
    }
  }
  for (let n = 0; n < containers; n++) {
    const svc = Math.floor(n / perService);
    const idx = (n % perService) + 1;
    const sidekick = svc % 10 === 0 && idx % 2 === 0;
    st.containers.set(`c${n}`, Container.parse({
      id: `c${n}`, uuid: `uuid-c${n}`, environmentId: 'e1', hostId: `h${n % hosts}`, stackId: `st${svc % stacks}`,
      serviceId: `sv${svc}`, name: `Stack${svc % stacks}-svc${svc}-${sidekick ? 'side-' : ''}${idx}`,
      launchConfigName: sidekick ? 'side' : '', serviceIndex: idx, createIndex: idx, deploymentUnitUuid: null,
      primaryIpAddress: n === 0 ? selfIp : ipOf(n), state: 'running', desiredState: 'running', startCount: 1,
      config: { image: 'nginx', labels: { app: `svc${svc}` }, ports: [{ publicPort: 10000 + svc, privatePort: 80, protocol: 'tcp' }] },
      created: CREATED,
    }));
  }
  return st;
}

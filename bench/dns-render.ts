// Time to render the bench environment's DNS data (the agent pays this on every change).
// Run: node --import tsx bench/dns-render.ts
import { buildDnsData } from '../src/dns/view.js';
import { benchEnv } from './dns-fixture.js';

for (const scope of ['linked', 'stack', 'environment'] as const) {
  const { state } = benchEnv();
  state.environment = { ...state.environment, network: { ...state.environment.network, dnsScope: scope } };
  buildDnsData(state);
  const t = performance.now();
  const n = 5;
  for (let i = 0; i < n; i++) buildDnsData(state);
  console.log(`${scope}: ${((performance.now() - t) / n).toFixed(0)} ms per render (${state.containers.size} containers)`);
}

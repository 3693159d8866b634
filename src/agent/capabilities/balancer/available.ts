// Whether this host can run balancers: the HAProxy the agent is configured with runs (`haproxy -v`).
// Undefined when it does; otherwise why not, in words a user can act on (reported on every balancer
// container scheduled here, instead of a balancer that silently never listens).
import { execa } from 'execa';

export async function haproxyUnavailable(bin: string): Promise<string | undefined> {
  const r = await execa(bin, ['-v'], { reject: false, timeout: 10_000, stdin: 'ignore' });
  const out = typeof r.stdout === 'string' ? r.stdout : '';
  if (r.exitCode === 0 && /HAProxy version/i.test(out)) return undefined;
  const err = typeof r.stderr === 'string' ? r.stderr.trim() : '';
  const why = (r as { code?: string }).code === 'ENOENT' ? 'not found' : (err || (r.shortMessage ?? `exit ${String(r.exitCode)}`)).slice(0, 200);
  return `HAProxy cannot run on this host (\`${bin} -v\`: ${why}); install it or set agent.haproxy (DROVER_AGENT_HAPROXY)`;
}

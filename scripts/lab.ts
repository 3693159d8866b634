// npm run lab -- up [--hosts 3] | status | down [--id <id>] [--all]
// A multi-host drover lab for humans: N host netns with their own dockerd, the control plane in the root
// netns and one agent per host. `up` leaves it running; `down` removes it. Needs root. See test/lab/README.md.
import { Command } from 'commander';
import Docker from 'dockerode';
import { pingDocker } from '../test/lab/dockerd.js';
import { LAB_ADMIN, startDrover } from '../test/lab/drover.js';
import { labUnavailable, startLab } from '../test/lab/lab.js';
import { netnsExists } from '../test/lab/netns.js';
import { isAlive } from '../test/lab/proc.js';
import { knownLabs, ownerStatus, teardownLab } from '../test/lab/teardown.js';
import type { LabState } from '../test/lab/state.js';

// `npm run lab -- status | head` must not crash on the closed pipe
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function requireLab(): void {
  const why = labUnavailable();
  if (why) {
    process.stderr.write(`lab: ${why}\n`);
    process.exit(2);
  }
}

async function up(o: { hosts: string; agents: boolean; overlay: string; network: boolean }): Promise<void> {
  requireLab();
  const hosts = Number(o.hosts);
  const log = (m: string) => process.stderr.write(`  ${m}\n`);
  const lab = await startLab({ hosts, log });
  try {
    const t0 = Date.now();
    if (o.overlay !== 'ipsec' && o.overlay !== 'vxlan') throw new Error(`--overlay must be ipsec or vxlan, not "${o.overlay}"`);
    const drover = o.agents ? await startDrover(lab, { overlay: o.overlay, network: o.network ? 'on' : 'off' }) : undefined;
    lab.timings.drover = Date.now() - t0;
    lab.keep();
    const cp = drover?.cp;
    const lines = [
      '',
      `lab ${lab.id} is up in ${secs((lab.timings.up ?? 0) + lab.timings.drover)} (${Object.entries(lab.timings)
        .map(([k, v]) => `${k} ${secs(v)}`)
        .join(', ')})`,
      `  dir: ${lab.dir} (state: ${lab.dir}/lab.json)`,
      `  underlay: root netns ${lab.rootIp}, hosts ${lab.hosts.map((h) => h.ip).join(' ')}`,
    ];
    if (cp) {
      lines.push(
        `  control plane: ${cp.url} (log ${cp.logPath})`,
        `    export DROVER_URL=${cp.url} DROVER_ACCESS_KEY=${LAB_ADMIN.accessKey} DROVER_SECRET_KEY=${LAB_ADMIN.secretKey}`,
        `    curl -su ${LAB_ADMIN.accessKey}:${LAB_ADMIN.secretKey} ${cp.url}/v1/hosts`,
        `    ./bin/drover stack up -f docker-compose.yml -n myapp      (with the exports above)`,
      );
    }
    for (const h of lab.hosts) {
      lines.push(
        `  ${h.name}: ${h.ip}, netns ${h.netns}`,
        `    docker -H unix://${h.dockerSocket} ps`,
        `    ip netns exec ${h.netns} sh                         (a shell "on" ${h.name})`,
      );
      if (drover) lines.push(`    agent log: ${h.dataDir}/agent.log`);
    }
    lines.push(`  test image in every dockerd: ${lab.image}`, `  npm run lab -- status     npm run lab -- down --id ${lab.id}`, '');
    process.stdout.write(lines.join('\n') + '\n');
  } catch (err) {
    await lab.down().catch(() => undefined);
    throw err;
  }
}

async function containersOf(socket: string): Promise<string> {
  if (!(await pingDocker(socket))) return 'dockerd not answering';
  const list = await new Docker({ socketPath: socket }).listContainers({ all: true });
  if (list.length === 0) return 'no containers';
  return list
    .map((c) => {
      const ips = Object.values(c.NetworkSettings?.Networks ?? {})
        .map((n) => n.IPAddress)
        .filter(Boolean)
        .join(',');
      return `${(c.Names[0] ?? c.Id.slice(0, 12)).replace(/^\//, '')} ${c.State}${ips ? ` ${ips}` : ''}`;
    })
    .join('; ');
}

function pidStatus(ref: { pid: number; startTime: string } | undefined): string {
  if (!ref) return 'none';
  return `${ref.pid} ${isAlive(ref) ? 'alive' : 'dead'}`;
}

async function status(): Promise<void> {
  const labs = knownLabs();
  if (labs.length === 0) {
    process.stdout.write('no labs\n');
    return;
  }
  for (const st of labs) {
    const owner = ownerStatus(st);
    const ownerText = owner === 'kept' ? 'kept (npm run lab -- up)' : owner === 'alive' ? `owned by live process ${st.owner?.pid}` : 'stale (owner gone)';
    process.stdout.write(`lab ${st.id}  ${st.dir}  ${ownerText}  created ${st.created}\n`);
    if (st.rootIp) process.stdout.write(`  underlay ${st.subnetPrefix}.0/24, root ${st.rootIp} on ${st.rootVeth}\n`);
    const cp = st.procs.find((p) => p.what === 'control-plane');
    if (st.controlPlane) process.stdout.write(`  control plane ${st.controlPlane.url} pid ${pidStatus(cp)}\n`);
    for (const h of st.hosts) {
      const agents = st.procs.filter((p) => p.host === h.name);
      process.stdout.write(
        `  ${h.name} ${h.ip || '?'} netns ${h.netns} ${netnsExists(h.netns) ? 'up' : 'MISSING'}; dockerd ${pidStatus(h.dockerd)}; ` +
          `${agents.map((a) => `${a.what} ${pidStatus(a)}`).join(', ') || 'no agent'}\n`,
      );
      process.stdout.write(`     containers: ${await containersOf(h.dockerSocket).catch((e: unknown) => (e as Error).message)}\n`);
    }
  }
}

async function down(o: { id?: string; all?: boolean }): Promise<void> {
  requireLab();
  const labs = knownLabs().filter((st) => (o.id ? st.id === o.id : true));
  if (o.id && labs.length === 0) {
    process.stdout.write(`no lab ${o.id}\n`);
    return;
  }
  let failed = 0;
  for (const st of labs as LabState[]) {
    if (!o.id && !o.all && ownerStatus(st) === 'alive') {
      process.stdout.write(`lab ${st.id}: skipped, owned by live process ${st.owner?.pid} (a test?); use --all or --id ${st.id}\n`);
      continue;
    }
    const t0 = Date.now();
    try {
      await teardownLab(st, (m) => process.stdout.write(`  ${m}\n`));
      process.stdout.write(`lab ${st.id}: down in ${secs(Date.now() - t0)}\n`);
    } catch (err) {
      failed++;
      process.stderr.write(`lab ${st.id}: ${(err as Error).message}\n`);
    }
  }
  if (labs.length === 0) process.stdout.write('no labs\n');
  if (failed) process.exitCode = 1;
}

const program = new Command()
  .name('npm run lab --')
  .description('multi-host drover lab: host netns with their own dockerd, control plane, agents (root only)');
program
  .command('up')
  .description('bring a lab up and leave it running')
  .option('--hosts <n>', 'number of hosts', '3')
  .option('--no-agents', 'only netns + dockerds, no control plane or agents')
  .option('--overlay <ipsec|vxlan>', 'the managed network between the hosts: IPsec tunnels or plain VXLAN', 'ipsec')
  .option('--no-network', 'agents without the managed network (containers reach only their own host)')
  .action(up);
program.command('status').description('labs on this machine: hosts, processes, containers').action(status);
program
  .command('down')
  .description('tear labs down (all kept and stale ones, or one)')
  .option('--id <id>', 'only this lab')
  .option('--all', 'also labs owned by a live process (e.g. a running test)')
  .action(down);

program.parseAsync(process.argv).then(
  () => process.exit(),
  (err: unknown) => {
    process.stderr.write(`lab: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);

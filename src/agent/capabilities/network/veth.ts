// The host-side veth of a container's managed interface: the container's interface that holds its
// managed address names its peer's ifindex (`link_index`), which is the veth on the host. Read with
// `ip -j` inside the container's network namespace (nsenter by PID) and in the host's.
import { execa } from 'execa';
import { z } from 'zod';

const IpAddrList = z.array(
  z
    .object({
      ifname: z.string(),
      link_index: z.number().int().optional(),
      addr_info: z.array(z.object({ family: z.string(), local: z.string().optional() }).loose()).default([]),
    })
    .loose(),
);
const IpLinkList = z.array(z.object({ ifindex: z.number().int(), ifname: z.string() }).loose());

/** The host-side interface name of the veth whose container end holds `ip`, in the netns of process `pid`. */
export async function hostVethOf(pid: number, ip: string): Promise<string | undefined> {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const inner = await execa('nsenter', ['-t', String(pid), '-n', 'ip', '-j', '-4', 'addr', 'show'], { reject: false, timeout: 5000 });
  if (inner.exitCode !== 0) return undefined;
  const ifaces = IpAddrList.parse(JSON.parse(inner.stdout || '[]'));
  const holder = ifaces.find((i) => i.addr_info.some((a) => a.family === 'inet' && a.local === ip));
  if (holder?.link_index === undefined) return undefined;
  const outer = await execa('ip', ['-j', 'link', 'show'], { timeout: 5000 });
  const links = IpLinkList.parse(JSON.parse(outer.stdout || '[]'));
  return links.find((l) => l.ifindex === holder.link_index)?.ifname;
}

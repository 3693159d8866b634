// Parsers of what iproute2 says (`ip -j …`, `bridge -j …`), pure: JSON text → the KernelState parts
// render.ts diffs against. zod at this edge: an iproute2 that prints something else fails with a message
// naming the command instead of a wrong diff.
import { z } from 'zod';
import type { FdbEntry, KernelAddr, KernelLink, KernelNeighbour, KernelRoute } from './render.js';

function parseJson<T>(what: string, text: string, schema: z.ZodType<T>): T {
  // iproute2 prints nothing (not `[]`) for an empty list in some versions.
  const trimmed = text.trim();
  let raw: unknown;
  try {
    raw = trimmed === '' ? [] : JSON.parse(trimmed);
  } catch (err) {
    throw new Error(`\`${what}\` printed something that is not JSON (${(err as Error).message}): ${trimmed.slice(0, 200)}`);
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new Error(`\`${what}\` printed JSON of an unexpected shape: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

const LinkJson = z.array(
  z
    .object({
      ifname: z.string(),
      flags: z.array(z.string()).default([]),
      mtu: z.number().int(),
      address: z.string().optional(),
      linkinfo: z
        .object({
          info_kind: z.string().optional(),
          info_data: z
            .object({
              id: z.number().int().optional(),
              local: z.string().optional(),
              link: z.string().optional(),
              port: z.number().int().optional(),
              learning: z.boolean().optional(),
              udp_csum: z.boolean().optional(),
            })
            .loose()
            .optional(),
        })
        .loose()
        .optional(),
    })
    .loose(),
);

/** `ip -j -d link show <dev>`: the device (undefined for an empty list). */
export function parseLink(text: string): KernelLink | undefined {
  const l = parseJson('ip -j -d link show', text, LinkJson)[0];
  if (!l) return undefined;
  const d = l.linkinfo?.info_data;
  return {
    kind: l.linkinfo?.info_kind,
    vni: d?.id,
    mac: l.address,
    local: d?.local,
    dev: d?.link,
    dstport: d?.port,
    learning: d?.learning,
    udpCsum: d?.udp_csum,
    mtu: l.mtu,
    // Administratively up; a VXLAN device's operstate is UNKNOWN even when it works.
    up: l.flags.includes('UP'),
  };
}

const AddrJson = z.array(
  z
    .object({
      ifname: z.string().optional(),
      mtu: z.number().int().optional(),
      addr_info: z
        .array(z.object({ family: z.string(), local: z.string().optional(), prefixlen: z.number().int().optional(), label: z.string().optional() }).loose())
        .default([]),
    })
    .loose(),
);

/** `ip -j -4 addr show dev <dev>`: its IPv4 addresses. */
export function parseAddrs(text: string): KernelAddr[] {
  const out: KernelAddr[] = [];
  for (const l of parseJson('ip -j addr show', text, AddrJson)) {
    for (const a of l.addr_info) {
      if (a.family !== 'inet' || !a.local || a.prefixlen === undefined) continue;
      out.push({ ip: a.local, prefixlen: a.prefixlen, label: a.label });
    }
  }
  return out;
}

/** `ip -j -4 addr show` (all devices): the interface holding `ip`, with its MTU. */
export function interfaceOf(text: string, ip: string): { dev: string; mtu: number } | undefined {
  for (const l of parseJson('ip -j addr show', text, AddrJson)) {
    if (l.ifname && l.mtu !== undefined && l.addr_info.some((a) => a.family === 'inet' && a.local === ip)) return { dev: l.ifname, mtu: l.mtu };
  }
  return undefined;
}

const NeighJson = z.array(z.object({ dst: z.string(), lladdr: z.string().optional(), state: z.array(z.string()).default([]) }).loose());

/** `ip -j -4 neigh show dev <dev>`. */
export function parseNeighbours(text: string): KernelNeighbour[] {
  return parseJson('ip -j neigh show', text, NeighJson).map((n) => ({ ip: n.dst, mac: n.lladdr, permanent: n.state.includes('PERMANENT') }));
}

const FdbJson = z.array(z.object({ mac: z.string(), dst: z.string().optional() }).loose());

/** `bridge -j fdb show dev <dev>`: the entries with a remote (the others are not a VXLAN's). */
export function parseFdb(text: string): FdbEntry[] {
  const out: FdbEntry[] = [];
  for (const f of parseJson('bridge -j fdb show', text, FdbJson)) if (f.dst) out.push({ mac: f.mac, dst: f.dst });
  return out;
}

const RouteJson = z.array(
  z
    .object({
      dst: z.string(),
      gateway: z.string().optional(),
      flags: z.array(z.string()).default([]),
      metric: z.number().int().optional(),
      protocol: z.string().optional(),
    })
    .loose(),
);

/** `ip -j -4 route show dev <dev>` (table main). */
export function parseRoutes(text: string): KernelRoute[] {
  return parseJson('ip -j route show', text, RouteJson).map((r) => ({
    dst: r.dst,
    via: r.gateway,
    onlink: r.flags.includes('onlink'),
    metric: r.metric,
    protocol: r.protocol,
  }));
}

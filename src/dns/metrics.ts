// Prometheus metrics of the DNS server, registered in the Registry the caller passes (a private one
// otherwise). Label children are resolved once and kept, so counting a query is a lookup and an add.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { RCODE_NAMES, TYPE } from './wire.js';

/** Query types with their own label value; the rest are counted as OTHER. */
const KNOWN_TYPES: readonly string[] = [...Object.keys(TYPE), 'OTHER'];
const TYPE_INDEX: ReadonlyMap<number, number> = new Map(Object.values(TYPE).map((v, i) => [v, i]));
const OTHER_INDEX = KNOWN_TYPES.length - 1;

/** Reasons of drover_dns_dropped_total: messages not answered or replies not sent. */
const DROP_REASONS = ['not-a-query', 'udp-oversized', 'udp-send-failed', 'udp-port-zero', 'tcp-empty-frame', 'tcp-closed', 'tcp-oversized'] as const;
export type DropReason = (typeof DROP_REASONS)[number];
const DROP_INDEX = Object.fromEntries(DROP_REASONS.map((r, i) => [r, i])) as Record<DropReason, number>;

export interface UdpTotals {
  batches: number;
  received: number;
  sendErrors: number;
  truncated: number;
}

/**
 * Hot-path counts are plain numbers, added to the prom-client metrics when they are collected (a
 * prom-client `inc` hashes its labels on every call, which costs more than answering a cached name).
 */
export class DnsMetrics {
  readonly registry: Registry;
  /** Pending query counts by qtype * 32 + rcode (qtype and rcode indexes below). */
  private readonly pending = new Float64Array(KNOWN_TYPES.length * 32);
  private hits = 0;
  private misses = 0;
  /** Pending drop counts by DROP_INDEX. */
  private readonly drops = new Float64Array(DROP_REASONS.length);
  readonly upstreamDuration: Histogram<'transport' | 'outcome'>;
  /** TCP connections closed by us (or refused), by reason (see tcp.ts). */
  readonly tcpClosed: Counter<'reason'>;
  /** Times a TCP connection stopped being read (backpressure), by the bound it hit. */
  readonly tcpPaused: Counter<'reason'>;
  /** Open TCP connections, read at scrape time. */
  private tcpOpen: () => number = () => 0;

  /** Totals of the batched UDP sockets (cumulative, from the addon), read at scrape time. */
  private udpTotals: () => UdpTotals = () => ({ batches: 0, received: 0, sendErrors: 0, truncated: 0 });
  private readonly udpSeen: UdpTotals = { batches: 0, received: 0, sendErrors: 0, truncated: 0 };

  constructor(registry?: Registry, cacheSize: () => number = () => 0) {
    this.registry = registry ?? new Registry();
    const registers = [this.registry];
    const pending = this.pending;
    new Counter({
      name: 'drover_dns_queries_total',
      help: 'DNS queries answered, by query type and response code',
      labelNames: ['type', 'rcode'],
      registers,
      collect() {
        for (let i = 0; i < pending.length; i++) {
          const v = pending[i]!;
          if (v === 0) continue;
          pending[i] = 0;
          this.labels(KNOWN_TYPES[Math.floor(i / 32)]!, RCODE_NAMES.get(i % 32) ?? 'OTHER').inc(v);
        }
      },
    });
    new Counter({
      name: 'drover_dns_cache_hits_total',
      help: 'Recursed queries answered from the cache',
      registers,
      collect: () => this.flushCache('hits'),
    });
    new Counter({
      name: 'drover_dns_cache_misses_total',
      help: 'Recursed queries that had to ask an upstream',
      registers,
      collect: () => this.flushCache('misses'),
    });
    this.upstreamDuration = new Histogram({
      name: 'drover_dns_upstream_duration_seconds',
      help: 'Time to an upstream answer (or failure), by transport and outcome',
      labelNames: ['transport', 'outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
      registers,
    });
    const drops = this.drops;
    const addDrops = (reason: DropReason, n: number): void => this.addDrops(reason, n);
    new Counter({
      name: 'drover_dns_dropped_total',
      help: `Messages not answered or replies not sent, by reason (${DROP_REASONS.join(', ')})`,
      labelNames: ['reason'],
      registers,
      collect() {
        addDrops('udp-send-failed', udpDelta('sendErrors'));
        addDrops('udp-oversized', udpDelta('truncated'));
        for (let i = 0; i < drops.length; i++) {
          const v = drops[i]!;
          if (v === 0) continue;
          drops[i] = 0;
          this.labels(DROP_REASONS[i]!).inc(v);
        }
      },
    });
    const udpDelta = (key: keyof UdpTotals): number => {
      const now = this.udpTotals()[key];
      const d = now - this.udpSeen[key];
      this.udpSeen[key] = now;
      return d > 0 ? d : 0; // a closed listener takes its counts with it
    };
    new Counter({
      name: 'drover_dns_udp_batches_total',
      help: 'Reads of the batched UDP transport that returned datagrams (datagrams / batches = mean batch size)',
      registers,
      collect() {
        const d = udpDelta('batches');
        if (d > 0) this.inc(d);
      },
    });
    new Counter({
      name: 'drover_dns_udp_datagrams_total',
      help: 'Datagrams received by the batched UDP transport',
      registers,
      collect() {
        const d = udpDelta('received');
        if (d > 0) this.inc(d);
      },
    });
    this.tcpClosed = new Counter({
      name: 'drover_dns_tcp_closed_total',
      help:
        'TCP connections closed or refused by the server, by reason (idle, frame-timeout, over-cap, client-cap, evicted, shed, shutdown)',
      labelNames: ['reason'],
      registers,
    });
    this.tcpPaused = new Counter({
      name: 'drover_dns_tcp_paused_total',
      help: 'Times reading a TCP connection stopped for backpressure, by the bound reached (in-flight, queued-bytes, global-budget)',
      labelNames: ['reason'],
      registers,
    });
    const tcpOpen = (): number => this.tcpOpen();
    new Gauge({
      name: 'drover_dns_tcp_connections',
      help: 'Open DNS-over-TCP connections',
      registers,
      collect() {
        this.set(tcpOpen());
      },
    });
    new Gauge({
      name: 'drover_dns_cache_entries',
      help: 'Entries in the upstream answer cache',
      registers,
      collect() {
        this.set(cacheSize());
      },
    });
  }

  /** Where the batched UDP transport's counts come from (the server's listeners, summed). */
  setUdpSource(totals: () => UdpTotals): void {
    this.udpTotals = totals;
  }

  /** Where the open TCP connection count comes from (the server's listeners, summed). */
  setTcpSource(open: () => number): void {
    this.tcpOpen = open;
  }

  private flushCache(which: 'hits' | 'misses'): void {
    const c = this.registry.getSingleMetric(`drover_dns_cache_${which}_total`);
    const v = this[which];
    this[which] = 0;
    if (v > 0 && c instanceof Counter) c.inc(v);
  }

  /** Counts one answered query. */
  query(qtype: number, rcode: number): void {
    const t = TYPE_INDEX.get(qtype) ?? OTHER_INDEX;
    const i = t * 32 + (rcode < 32 ? rcode : 31);
    this.pending[i] = this.pending[i]! + 1;
  }

  /** Counts a message not answered or a reply not sent (drover_dns_dropped_total{reason}). */
  drop(reason: DropReason): void {
    this.addDrops(reason, 1);
  }

  private addDrops(reason: DropReason, n: number): void {
    const i = DROP_INDEX[reason];
    this.drops[i] = this.drops[i]! + n;
  }

  cacheHit(): void {
    this.hits++;
  }

  cacheMiss(): void {
    this.misses++;
  }
}

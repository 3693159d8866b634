// Prometheus metrics of the DNS server, registered in the Registry the caller passes (a private one
// otherwise). Label children are resolved once and kept, so counting a query is a lookup and an add.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { RCODE_NAMES, TYPE_NAMES } from './wire.js';

interface Inc {
  inc(v?: number): void;
}

export class DnsMetrics {
  readonly registry: Registry;
  private readonly queries: Counter<'type' | 'rcode'>;
  private readonly children = new Map<number, Inc>();
  readonly cacheHits: Counter;
  readonly cacheMisses: Counter;
  readonly upstreamDuration: Histogram<'transport' | 'outcome'>;
  readonly dropped: Counter<'reason'>;

  constructor(registry?: Registry, cacheSize: () => number = () => 0) {
    this.registry = registry ?? new Registry();
    const registers = [this.registry];
    this.queries = new Counter({
      name: 'drover_dns_queries_total',
      help: 'DNS queries answered, by query type and response code',
      labelNames: ['type', 'rcode'],
      registers,
    });
    this.cacheHits = new Counter({ name: 'drover_dns_cache_hits_total', help: 'Recursed queries answered from the cache', registers });
    this.cacheMisses = new Counter({
      name: 'drover_dns_cache_misses_total',
      help: 'Recursed queries that had to ask an upstream',
      registers,
    });
    this.upstreamDuration = new Histogram({
      name: 'drover_dns_upstream_duration_seconds',
      help: 'Time to an upstream answer (or failure), by transport and outcome',
      labelNames: ['transport', 'outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
      registers,
    });
    this.dropped = new Counter({
      name: 'drover_dns_dropped_total',
      help: 'Messages not answered (not a query, or unparseable)',
      labelNames: ['reason'],
      registers,
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

  /** Counts one answered query. */
  query(qtype: number, rcode: number): void {
    const key = qtype * 4096 + rcode;
    let c = this.children.get(key);
    if (!c) {
      const type = TYPE_NAMES.get(qtype) ?? 'OTHER';
      const rc = RCODE_NAMES.get(rcode) ?? 'OTHER';
      c = this.queries.labels(type, rc);
      // Label cardinality is bounded: unknown types and rcodes are counted as OTHER.
      if (this.children.size < 4096) this.children.set(key, c);
    }
    c.inc();
  }
}

// Prometheus metrics of the metadata service, registered once per registry (several servers may share one).
import { Counter, Gauge, type Registry } from 'prom-client';
import { registeredMetric } from '../common/metrics.js';

export interface MetadataMetrics {
  requests: Counter<'code'>;
  /** Read at scrape time from the registered sources (no cost per request). */
  waiting: Gauge;
  updates: Counter;
  wakeups: Counter;
  /** Adds a source of the waiting-requests gauge (a server); returns its removal. */
  addWaitingSource(count: () => number): () => void;
}

const waitingSources = new WeakMap<Gauge, Set<() => number>>();

const isCounter = (m: unknown): m is Counter<'code'> => m instanceof Counter;
const isGauge = (m: unknown): m is Gauge => m instanceof Gauge;

export function metadataMetrics(registry: Registry): MetadataMetrics {
  const requests =
    registeredMetric(registry, 'drover_metadata_requests_total', isCounter) ??
    new Counter({
      name: 'drover_metadata_requests_total',
      help: 'Metadata HTTP requests answered, by status code',
      labelNames: ['code'] as const,
      registers: [registry],
    });
  const waiting =
    registeredMetric(registry, 'drover_metadata_waiting_requests', isGauge) ??
    new Gauge({
      name: 'drover_metadata_waiting_requests',
      help: 'Long-polling metadata requests currently waiting for a change',
      registers: [registry],
      collect() {
        let n = 0;
        for (const count of waitingSources.get(this) ?? []) n += count();
        this.set(n);
      },
    });
  let sources = waitingSources.get(waiting);
  if (!sources) waitingSources.set(waiting, (sources = new Set()));
  const live = sources;
  const updates =
    registeredMetric(registry, 'drover_metadata_answers_updates_total', isCounter) ??
    new Counter({
      name: 'drover_metadata_answers_updates_total',
      help: 'Times the metadata answers were replaced',
      registers: [registry],
    });
  const wakeups =
    registeredMetric(registry, 'drover_metadata_wakeups_total', isCounter) ??
    new Counter({
      name: 'drover_metadata_wakeups_total',
      help: 'Long-polling requests woken by a change of their value',
      registers: [registry],
    });
  return {
    requests,
    waiting,
    updates,
    wakeups,
    addWaitingSource(count) {
      live.add(count);
      return () => live.delete(count);
    },
  };
}

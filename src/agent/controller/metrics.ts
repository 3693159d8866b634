// Prometheus metrics of the controllers, registered once per registry (several agents may share one).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { registeredMetric } from '../../common/metrics.js';

export interface ControllerMetrics {
  /** Duration of start, reconcile and resync runs, by controller, phase and outcome. */
  duration: Histogram<'controller' | 'phase' | 'outcome'>;
  /** Failed runs, by controller and phase. */
  errors: Counter<'controller' | 'phase'>;
  /** Drift found and repaired by a resync, by controller. */
  repairs: Counter<'controller'>;
  /** 0 ok, 1 degraded, 2 failed, by controller. */
  health: Gauge<'controller'>;
}

const isHistogram = (m: unknown): m is Histogram<'controller' | 'phase' | 'outcome'> => m instanceof Histogram;
const isCounter = <L extends string>(m: unknown): m is Counter<L> => m instanceof Counter;
const isGauge = (m: unknown): m is Gauge<'controller'> => m instanceof Gauge;

export function controllerMetrics(registry: Registry): ControllerMetrics {
  return {
    duration:
      registeredMetric(registry, 'drover_agent_controller_run_duration_seconds', isHistogram) ??
      new Histogram({
        name: 'drover_agent_controller_run_duration_seconds',
        help: 'Duration of controller runs (phase: start, reconcile, resync; outcome: ok, error)',
        labelNames: ['controller', 'phase', 'outcome'] as const,
        buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
        registers: [registry],
      }),
    errors:
      registeredMetric(registry, 'drover_agent_controller_errors_total', isCounter<'controller' | 'phase'>) ??
      new Counter({
        name: 'drover_agent_controller_errors_total',
        help: 'Controller runs that failed (retried with backoff), by controller and phase',
        labelNames: ['controller', 'phase'] as const,
        registers: [registry],
      }),
    repairs:
      registeredMetric(registry, 'drover_agent_controller_drift_repairs_total', isCounter<'controller'>) ??
      new Counter({
        name: 'drover_agent_controller_drift_repairs_total',
        help: 'Drift found and repaired by a periodic resync, by controller',
        labelNames: ['controller'] as const,
        registers: [registry],
      }),
    health:
      registeredMetric(registry, 'drover_agent_controller_health', isGauge) ??
      new Gauge({
        name: 'drover_agent_controller_health',
        help: 'Controller health: 0 ok, 1 degraded (last good in force), 2 failed (nothing in force)',
        labelNames: ['controller'] as const,
        registers: [registry],
      }),
  };
}

// Prometheus helpers shared by the metric sets of drover's parts.
import type { Registry } from 'prom-client';

/**
 * The metric of that name already in the registry (several servers or agents may share one registry),
 * or undefined; a metric of that name of another type is a programming error and throws.
 */
export function registeredMetric<T>(registry: Registry, name: string, isT: (m: unknown) => m is T): T | undefined {
  const m: unknown = registry.getSingleMetric(name);
  if (m === undefined) return undefined;
  if (!isT(m)) throw new Error(`metric ${name} is already registered with another type`);
  return m;
}

// Several sources of container reports as one (the Docker runtime's and the balancer controller's):
// reports drained from each in order, listeners registered on each; found containers and their answers
// go to the sources that handle adoption.
import type { ContainerStateSource } from './agent.js';

export function mergeStateSources(...sources: (ContainerStateSource | undefined)[]): ContainerStateSource | undefined {
  const list = sources.filter((s): s is ContainerStateSource => s !== undefined);
  if (list.length <= 1) return list[0];
  const finders = list.filter((s) => s.drainFound !== undefined);
  return {
    drainReports: () => list.flatMap((s) => s.drainReports()),
    onReports: (cb) => {
      for (const s of list) s.onReports(cb);
    },
    ...(finders.length
      ? {
          drainFound: () => finders.flatMap((s) => s.drainFound?.() ?? []),
          foundAnswered: (answers) => {
            for (const s of finders) s.foundAnswered?.(answers);
          },
        }
      : {}),
  };
}

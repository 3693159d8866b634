// Scheduling constraints read from the original's io.rancher.scheduler.* labels.
//
//   io.rancher.scheduler.affinity:host_label[_soft][_ne]        key=value[,key=value…]
//   io.rancher.scheduler.affinity:container_label[_soft][_ne]   key=value[,key=value…]
//   io.rancher.scheduler.affinity:container[_soft][_ne]         containerName[,containerName…]
//   io.rancher.scheduler.global                                 true
// `${stack_name}` and `${service_name}` in values are replaced (the original's idiom for
// "not next to another container of this service").
import { ValidationError } from '../../common/errors.js';

export interface LabelTerm {
  key: string;
  value: string;
}

export interface Constraints {
  hostLabel: LabelTerm[];
  hostLabelNe: LabelTerm[];
  hostLabelSoft: LabelTerm[];
  hostLabelSoftNe: LabelTerm[];
  containerLabel: LabelTerm[];
  containerLabelNe: LabelTerm[];
  containerLabelSoft: LabelTerm[];
  containerLabelSoftNe: LabelTerm[];
  container: string[];
  containerNe: string[];
  containerSoft: string[];
  containerSoftNe: string[];
  requestedHostId?: string;
}

const PREFIX = 'io.rancher.scheduler.affinity:';

const LABEL_FIELDS: Record<string, keyof Constraints> = {
  host_label: 'hostLabel',
  host_label_ne: 'hostLabelNe',
  host_label_soft: 'hostLabelSoft',
  host_label_soft_ne: 'hostLabelSoftNe',
  container_label: 'containerLabel',
  container_label_ne: 'containerLabelNe',
  container_label_soft: 'containerLabelSoft',
  container_label_soft_ne: 'containerLabelSoftNe',
};
const NAME_FIELDS: Record<string, keyof Constraints> = {
  container: 'container',
  container_ne: 'containerNe',
  container_soft: 'containerSoft',
  container_soft_ne: 'containerSoftNe',
};

export function emptyConstraints(): Constraints {
  return {
    hostLabel: [],
    hostLabelNe: [],
    hostLabelSoft: [],
    hostLabelSoftNe: [],
    containerLabel: [],
    containerLabelNe: [],
    containerLabelSoft: [],
    containerLabelSoftNe: [],
    container: [],
    containerNe: [],
    containerSoft: [],
    containerSoftNe: [],
  };
}

/** Reads constraints from the labels of every launch config of a deployment unit (merged). */
export function constraintsFromLabels(
  labelSets: Record<string, string>[],
  ctx: { stackName: string; serviceName: string },
): Constraints {
  const c = emptyConstraints();
  const subst = (v: string) => v.replaceAll('${stack_name}', ctx.stackName).replaceAll('${service_name}', ctx.serviceName);
  for (const labels of labelSets) {
    for (const [label, raw] of Object.entries(labels)) {
      if (!label.startsWith(PREFIX)) continue;
      const kind = label.slice(PREFIX.length);
      const values = subst(raw)
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      const lf = LABEL_FIELDS[kind];
      const nf = NAME_FIELDS[kind];
      if (lf) {
        for (const v of values) {
          const eq = v.indexOf('=');
          if (eq <= 0) {
            throw new ValidationError(
              'InvalidSchedulingLabel',
              `label ${label}: "${v}" is not key=value`,
              `labels.${label}`,
            );
          }
          (c[lf] as LabelTerm[]).push({ key: v.slice(0, eq).trim(), value: v.slice(eq + 1).trim() });
        }
      } else if (nf) {
        (c[nf] as string[]).push(...values);
      } else {
        throw new ValidationError(
          'InvalidSchedulingLabel',
          `unknown scheduling label ${label} (known: ${[...Object.keys(LABEL_FIELDS), ...Object.keys(NAME_FIELDS)].map((k) => PREFIX + k).join(', ')})`,
          `labels.${label}`,
        );
      }
    }
  }
  return c;
}

export function isGlobal(labels: Record<string, string>): boolean {
  return (labels['io.rancher.scheduler.global'] ?? '').toLowerCase() === 'true';
}

export function describeTerms(terms: LabelTerm[]): string {
  return terms.map((t) => `${t.key}=${t.value}`).join(',');
}

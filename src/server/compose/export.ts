// StackSpec → docker-compose.yml (v1 layout: services at the top level) + rancher-compose.yml.
// Values are written as substituted, with `$` escaped as `$$` so they survive interpolation on re-import;
// `.catalog` is not interpolated and so is written verbatim. parseCompose(exportCompose(s)), given the
// same answers, gives back s for every spec parseCompose produced.
import { Document, isScalar, visit } from 'yaml';
import type { HealthCheck, LaunchConfig, LbConfig, PortRule, UpgradeStrategy } from '../../model/resources.js';
import { formatLink, formatPort, formatRestart } from './fields.js';
import { escapeValue } from './interpolate.js';
import {
  DNS_SERVICE_IMAGE,
  EXTERNAL_SERVICE_IMAGE,
  LABEL_GLOBAL,
  LABEL_PULL_IMAGE,
  LABEL_REQUESTED_IP,
  LABEL_SIDEKICKS,
  LABEL_START_ONCE,
} from './service.js';
import type { CatalogInfo, ComposeFiles, ServiceSpec, StackSpec } from './spec.js';

type Out = Record<string, unknown>;

/** Adds `key: value` when value is defined (and, for `nonEmpty`, not an empty list or map). */
function put(out: Out, key: string, value: unknown, nonEmpty = false): void {
  if (value === undefined) return;
  if (nonEmpty && Array.isArray(value) && value.length === 0) return;
  if (nonEmpty && typeof value === 'object' && value !== null && Object.keys(value).length === 0) return;
  out[key] = value;
}

/** The labels, made consistent with the fields Rancher read from labels (a no-op for parsed specs). */
function labelsOf(lc: LaunchConfig, svc?: ServiceSpec): Record<string, string> {
  const labels = { ...lc.labels };
  const set = (key: string, value: string | undefined, unlessAbsent = false): void => {
    if (value === undefined || (unlessAbsent && labels[key] === undefined)) return;
    labels[key] = value;
  };
  set(LABEL_START_ONCE, lc.startOnce ? 'true' : 'false', !lc.startOnce);
  if (lc.requestedIpAddress !== labels[LABEL_REQUESTED_IP]) set(LABEL_REQUESTED_IP, lc.requestedIpAddress);
  set(LABEL_PULL_IMAGE, lc.pullPolicy, lc.pullPolicy === 'missing');
  if (svc) {
    set(LABEL_GLOBAL, svc.global ? 'true' : 'false', !svc.global);
    const names = svc.secondaryLaunchConfigs.map((s) => s.name ?? '');
    const written = (labels[LABEL_SIDEKICKS] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
    if (names.join(',') !== written.join(',')) {
      if (names.length > 0) labels[LABEL_SIDEKICKS] = names.join(', ');
      else delete labels[LABEL_SIDEKICKS];
    }
  }
  return labels;
}

function launchConfigOut(lc: LaunchConfig, svc?: ServiceSpec): Out {
  const out: Out = { image: lc.image };
  put(out, 'command', lc.command);
  put(out, 'entrypoint', lc.entrypoint);
  put(out, 'environment', lc.environment, true);
  put(out, 'labels', labelsOf(lc, svc), true);
  if (svc) linksOut(out, svc);
  put(out, 'ports', lc.ports.map(formatPort), true);
  put(out, 'expose', lc.expose.map(formatPort), true);
  put(out, 'volumes', lc.volumes, true);
  put(out, 'volumes_from', lc.dataVolumesFromLaunchConfigs, true);
  put(out, 'dns', lc.dns, true);
  put(out, 'dns_search', lc.dnsSearch, true);
  put(out, 'hostname', lc.hostname);
  put(out, 'domainname', lc.domainName);
  if (lc.networkMode !== 'managed') out.network_mode = lc.networkMode;
  put(out, 'restart', lc.restartPolicy && formatRestart(lc.restartPolicy));
  put(out, 'tty', lc.tty);
  put(out, 'stdin_open', lc.stdinOpen);
  put(out, 'privileged', lc.privileged);
  put(out, 'read_only', lc.readOnly);
  put(out, 'user', lc.user);
  put(out, 'working_dir', lc.workingDir);
  put(out, 'cap_add', lc.capAdd);
  put(out, 'cap_drop', lc.capDrop);
  put(out, 'devices', lc.devices);
  put(out, 'security_opt', lc.securityOpt);
  put(out, 'extra_hosts', lc.extraHosts);
  put(out, 'mem_limit', lc.memory);
  put(out, 'mem_reservation', lc.memoryReservation);
  put(out, 'cpu_shares', lc.cpuShares);
  put(out, 'log_driver', lc.logConfig?.driver);
  put(out, 'log_opt', lc.logConfig?.config, true);
  put(out, 'stop_signal', lc.stopSignal);
  put(out, 'depends_on', lc.dependsOn);
  return out;
}

function linksOut(out: Out, svc: ServiceSpec): void {
  put(out, 'links', svc.links.filter((l) => l.stack === undefined).map(formatLink), true);
  put(out, 'external_links', svc.links.filter((l) => l.stack !== undefined).map(formatLink), true);
}

function dockerService(svc: ServiceSpec): Out {
  if (svc.kind === 'externalService') return { image: EXTERNAL_SERVICE_IMAGE };
  if (svc.kind === 'dnsService' || !svc.launchConfig) {
    const out: Out = { image: svc.kind === 'dnsService' ? DNS_SERVICE_IMAGE : EXTERNAL_SERVICE_IMAGE };
    linksOut(out, svc);
    return out;
  }
  return launchConfigOut(svc.launchConfig, svc);
}

function healthCheckOut(h: HealthCheck): Out {
  const out: Out = {
    port: h.port,
    interval: h.interval,
    response_timeout: h.responseTimeout,
    healthy_threshold: h.healthyThreshold,
    unhealthy_threshold: h.unhealthyThreshold,
  };
  put(out, 'initializing_timeout', h.initializingTimeout);
  put(out, 'reinitializing_timeout', h.reinitializingTimeout);
  put(out, 'request_line', h.requestLine);
  put(out, 'strategy', h.strategy);
  put(out, 'recreate_on_quorum_strategy_config', h.quorum !== undefined ? { quorum: h.quorum } : undefined);
  return out;
}

function portRuleOut(r: PortRule): Out {
  const out: Out = { source_port: r.sourcePort, protocol: r.protocol };
  put(out, 'hostname', r.hostname);
  put(out, 'path', r.path);
  put(out, 'service', r.service);
  put(out, 'target_port', r.targetPort);
  put(out, 'priority', r.priority);
  put(out, 'backend_name', r.backendName);
  put(out, 'selector', r.selector);
  return out;
}

function lbConfigOut(lb: LbConfig): Out {
  const out: Out = { port_rules: lb.portRules.map(portRuleOut) };
  put(out, 'certs', lb.certificateIds, true);
  put(out, 'default_cert', lb.defaultCertificateId);
  put(out, 'config', lb.config);
  put(out, 'stickiness_policy', lb.stickinessPolicy);
  return out;
}

function upgradeStrategyOut(u: UpgradeStrategy): Out {
  const out: Out = { start_first: u.startFirst };
  put(out, 'batch_size', u.batchSize);
  put(out, 'interval_millis', u.intervalMillis);
  return out;
}

function rancherService(svc: ServiceSpec): Out {
  const out: Out = {};
  const runs = svc.kind !== 'externalService' && svc.kind !== 'dnsService';
  if (runs) out.scale = svc.scale;
  put(out, 'metadata', svc.metadata, true);
  put(out, 'health_check', svc.healthCheck && healthCheckOut(svc.healthCheck));
  put(out, 'lb_config', svc.lbConfig && lbConfigOut(svc.lbConfig));
  put(out, 'upgrade_strategy', svc.upgradeStrategy && upgradeStrategyOut(svc.upgradeStrategy));
  put(out, 'external_ips', svc.externalIpAddresses, true);
  put(out, 'hostname', svc.hostname);
  if (svc.startOnCreate === false) out.start_on_create = false;
  put(out, 'drain_timeout_ms', svc.drainTimeoutMs);
  return out;
}

function catalogOut(c: CatalogInfo): Out {
  const out: Out = {};
  put(out, 'name', c.name);
  put(out, 'version', c.version);
  put(out, 'description', c.description);
  put(out, 'uuid', c.uuid);
  out.questions = c.questions.map((q) => {
    const question: Out = { variable: q.variable };
    put(question, 'label', q.label);
    put(question, 'description', q.description);
    question.type = q.type;
    question.required = q.required;
    put(question, 'default', q.default);
    put(question, 'options', q.options);
    return question;
  });
  return out;
}

/**
 * Strings YAML 1.1 readers (docker-compose, PyYAML) would take for something else — `yes`/`no`/`on`/`off`,
 * `1:30` (base 60), `0b1` — and the merge key `<<`: quoted, although YAML 1.2 reads them as strings.
 */
const YAML11_AMBIGUOUS = /^(?:[yYnN]|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|<<|[-+]?0b[01_]+|[-+]?\d[\d_]*(?::[0-5]?\d)+(?:\.[\d_]*)?)$/;

function toYaml(value: Out): string {
  if (Object.keys(value).length === 0) return '';
  const doc = new Document(value);
  visit(doc, {
    Scalar(_key, node) {
      if (isScalar(node) && typeof node.value === 'string' && YAML11_AMBIGUOUS.test(node.value)) node.type = 'QUOTE_DOUBLE';
    },
  });
  return doc.toString({ lineWidth: 0 });
}

export function exportCompose(spec: StackSpec): ComposeFiles {
  const docker: Out = {};
  const rancher: Out = {};
  if (spec.catalog) rancher['.catalog'] = catalogOut(spec.catalog);
  for (const svc of spec.services) {
    docker[svc.name] = escapeValue(dockerService(svc));
    for (const sidekick of svc.secondaryLaunchConfigs) {
      docker[sidekick.name ?? ''] = escapeValue(launchConfigOut(sidekick));
    }
    const settings = rancherService(svc);
    if (Object.keys(settings).length > 0) rancher[svc.name] = escapeValue(settings);
  }
  return { dockerCompose: toYaml(docker), rancherCompose: toYaml(rancher) };
}

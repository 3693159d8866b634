// src/model/resources.ts
import { z } from "zod";
var PROTOCOLS = ["tcp", "udp"];
var Protocol = z.enum(PROTOCOLS);
var PortSpec = z.object({
  hostIp: z.string().optional(),
  publicPort: z.number().int().min(1).max(65535).optional(),
  privatePort: z.number().int().min(1).max(65535),
  protocol: Protocol
});
var RestartPolicy = z.object({
  name: z.enum(["no", "always", "on-failure", "unless-stopped"]),
  maximumRetryCount: z.number().int().min(0).optional()
});
var NetworkMode = z.union([
  z.enum(["managed", "host", "bridge", "none"]),
  z.string().regex(/^container:.+$/)
]);
var LaunchConfig = z.object({
  /** Sidekick name; absent for the primary launch config. */
  name: z.string().optional(),
  image: z.string().min(1),
  command: z.array(z.string()).optional(),
  entrypoint: z.array(z.string()).optional(),
  environment: z.record(z.string(), z.string()).default({}),
  labels: z.record(z.string(), z.string()).default({}),
  ports: z.array(PortSpec).default([]),
  expose: z.array(PortSpec).default([]),
  /** Docker-style volume specs: `container`, `host:container[:mode]`, `name:container[:mode]`. */
  volumes: z.array(z.string()).default([]),
  /** Names of sidekicks of the same service whose volumes this container mounts. */
  dataVolumesFromLaunchConfigs: z.array(z.string()).default([]),
  dns: z.array(z.string()).default([]),
  dnsSearch: z.array(z.string()).default([]),
  hostname: z.string().optional(),
  domainName: z.string().optional(),
  networkMode: NetworkMode.default("managed"),
  restartPolicy: RestartPolicy.optional(),
  requestedIpAddress: z.string().optional(),
  requestedHostId: z.string().optional(),
  /** `io.rancher.container.start_once`: run to completion once, never restart. */
  startOnce: z.boolean().default(false),
  /** `io.rancher.container.pull_image`: `always` pulls before each create; default pulls when missing. */
  pullPolicy: z.enum(["always", "missing", "never"]).default("missing"),
  tty: z.boolean().optional(),
  stdinOpen: z.boolean().optional(),
  privileged: z.boolean().optional(),
  readOnly: z.boolean().optional(),
  user: z.string().optional(),
  workingDir: z.string().optional(),
  capAdd: z.array(z.string()).optional(),
  capDrop: z.array(z.string()).optional(),
  devices: z.array(z.string()).optional(),
  securityOpt: z.array(z.string()).optional(),
  extraHosts: z.array(z.string()).optional(),
  /** Memory limit in bytes. */
  memory: z.number().int().positive().optional(),
  memoryReservation: z.number().int().positive().optional(),
  cpuShares: z.number().int().positive().optional(),
  milliCpuReservation: z.number().int().positive().optional(),
  logConfig: z.object({ driver: z.string(), config: z.record(z.string(), z.string()).default({}) }).optional(),
  stopSignal: z.string().optional(),
  /** Compose `depends_on` (start ordering hint, kept for export). */
  dependsOn: z.array(z.string()).optional()
});
var HealthCheck = z.object({
  port: z.number().int().min(1).max(65535),
  interval: z.number().int().positive().default(2e3),
  responseTimeout: z.number().int().positive().default(2e3),
  healthyThreshold: z.number().int().positive().default(2),
  unhealthyThreshold: z.number().int().positive().default(3),
  initializingTimeout: z.number().int().positive().optional(),
  reinitializingTimeout: z.number().int().positive().optional(),
  requestLine: z.string().optional(),
  strategy: z.enum(["none", "recreate", "recreateOnQuorum"]).optional()
});
var PortRule = z.object({
  sourcePort: z.number().int().min(1).max(65535),
  protocol: z.enum(["http", "https", "tcp", "tls", "sni", "udp"]),
  hostname: z.string().optional(),
  path: z.string().optional(),
  /** `<stack>/<service>` or `<service>` (same stack), as written by the user. */
  service: z.string().optional(),
  /** Resolved target service id (set by the control plane). */
  serviceId: z.string().optional(),
  targetPort: z.number().int().min(1).max(65535).optional(),
  priority: z.number().int().optional(),
  backendName: z.string().optional(),
  selector: z.string().optional()
});
var StickinessPolicy = z.object({
  name: z.string().optional(),
  cookie: z.string().optional(),
  domain: z.string().optional(),
  indirect: z.boolean().optional(),
  nocache: z.boolean().optional(),
  postonly: z.boolean().optional(),
  mode: z.enum(["rewrite", "insert", "prefix"]).optional()
});
var LbConfig = z.object({
  portRules: z.array(PortRule).default([]),
  certificateIds: z.array(z.string()).default([]),
  defaultCertificateId: z.string().optional(),
  config: z.string().optional(),
  stickinessPolicy: StickinessPolicy.optional()
});
var UpgradeStrategy = z.object({
  startFirst: z.boolean().default(false),
  batchSize: z.number().int().positive().default(1),
  intervalMillis: z.number().int().min(0).default(2e3)
});
var SERVICE_KINDS = ["service", "loadBalancerService", "dnsService", "externalService"];
var ServiceKind = z.enum(SERVICE_KINDS);
var DNS_SCOPES = ["linked", "stack", "environment"];
var DnsScope = z.enum(DNS_SCOPES);
var EnvironmentNetwork = z.object({
  subnet: z.string().default("10.42.0.0/16"),
  dnsScope: DnsScope.default("linked"),
  /** Whether queries from non-container addresses (the host itself) get the environment view. */
  hostDnsView: z.boolean().default(false),
  overlay: z.enum(["ipsec", "vxlan"]).default("ipsec"),
  /** IPsec pre-shared key (hex); only ever sent to registered agents. */
  ipsecPsk: z.string().optional(),
  mtu: z.number().int().min(576).max(9e3).optional()
});
var Environment = z.object({
  id: z.string(),
  uuid: z.string(),
  name: z.string(),
  description: z.string().default(""),
  state: z.string(),
  network: EnvironmentNetwork,
  created: z.string()
});
var AppliedStatus = z.object({
  revision: z.number().int(),
  ok: z.boolean(),
  error: z.string().optional(),
  at: z.string()
});
var Host = z.object({
  id: z.string(),
  uuid: z.string(),
  environmentId: z.string(),
  name: z.string(),
  hostname: z.string(),
  agentIpAddress: z.string(),
  labels: z.record(z.string(), z.string()).default({}),
  state: z.string(),
  agentState: z.string(),
  milliCpu: z.number().int().optional(),
  memory: z.number().int().optional(),
  localStorageMb: z.number().int().optional(),
  lastSeen: z.string().optional(),
  applied: z.record(z.string(), AppliedStatus).default({}),
  created: z.string()
});
var Stack = z.object({
  id: z.string(),
  uuid: z.string(),
  environmentId: z.string(),
  name: z.string(),
  description: z.string().default(""),
  state: z.string(),
  dockerCompose: z.string().default(""),
  rancherCompose: z.string().default(""),
  /** Catalog answers (`environment` in the original API). */
  answers: z.record(z.string(), z.string()).default({}),
  externalId: z.string().optional(),
  system: z.boolean().default(false),
  created: z.string()
});
var ServiceUpgrade = z.object({
  previousLaunchConfig: LaunchConfig,
  previousSecondaryLaunchConfigs: z.array(LaunchConfig),
  strategy: UpgradeStrategy
});
var Service = z.object({
  id: z.string(),
  uuid: z.string(),
  environmentId: z.string(),
  stackId: z.string(),
  name: z.string(),
  kind: ServiceKind,
  state: z.string(),
  scale: z.number().int().min(0),
  /** `io.rancher.scheduler.global`: one container per matching host; `scale` is then derived. */
  global: z.boolean().default(false),
  launchConfig: LaunchConfig.optional(),
  secondaryLaunchConfigs: z.array(LaunchConfig).default([]),
  metadata: z.record(z.string(), z.unknown()).default({}),
  healthCheck: HealthCheck.optional(),
  lbConfig: LbConfig.optional(),
  upgradeStrategy: UpgradeStrategy.optional(),
  externalIpAddresses: z.array(z.string()).default([]),
  /** externalService with a hostname: the CNAME target. */
  hostname: z.string().optional(),
  vip: z.string().optional(),
  fqdn: z.string().optional(),
  createIndex: z.number().int().default(0),
  upgrade: ServiceUpgrade.optional(),
  system: z.boolean().default(false),
  created: z.string()
});
var CONTAINER_DESIRED_STATES = ["running", "stopped", "removed"];
var Container = z.object({
  id: z.string(),
  uuid: z.string(),
  environmentId: z.string(),
  hostId: z.string().nullable(),
  stackId: z.string().nullable(),
  serviceId: z.string().nullable(),
  name: z.string(),
  /** Sidekick name, or '' for a service's primary launch config and for standalone containers. */
  launchConfigName: z.string().default(""),
  serviceIndex: z.number().int().nullable(),
  createIndex: z.number().int().default(0),
  /** Deployment unit: the primary and its sidekicks share it. */
  deploymentUnitUuid: z.string().nullable(),
  primaryIpAddress: z.string().nullable(),
  /** Reported by the agent: creating | starting | running | stopping | stopped | error | removed. */
  state: z.string(),
  desiredState: z.enum(CONTAINER_DESIRED_STATES),
  /** 'current', or 'previous' for the containers an upgrade keeps for rollback. */
  generation: z.enum(["current", "previous"]).default("current"),
  exitCode: z.number().int().nullable().default(null),
  externalId: z.string().nullable().default(null),
  healthState: z.string().nullable().default(null),
  startCount: z.number().int().default(0),
  /** The resolved launch config (system labels included). */
  config: LaunchConfig,
  /** Started by hand on a host and adopted through its io.rancher.* labels. */
  adopted: z.boolean().default(false),
  transitioningMessage: z.string().optional(),
  created: z.string()
});
var ServiceLink = z.object({
  id: z.string(),
  environmentId: z.string(),
  serviceId: z.string(),
  consumedServiceId: z.string(),
  /** Link alias; '' when the link has none. */
  name: z.string().default(""),
  ports: z.array(z.string()).default([]),
  created: z.string()
});
var ContainerLink = z.object({
  id: z.string(),
  environmentId: z.string(),
  containerId: z.string(),
  targetContainerId: z.string(),
  name: z.string(),
  created: z.string()
});
var Certificate = z.object({
  id: z.string(),
  environmentId: z.string(),
  name: z.string(),
  description: z.string().default(""),
  cert: z.string(),
  certChain: z.string().optional(),
  /** The private key: stored, sent to agents (balancers need it), never returned by the API. */
  key: z.string().optional(),
  commonName: z.string().optional(),
  subjectAlternativeNames: z.array(z.string()).default([]),
  expiresAt: z.string().optional(),
  fingerprint: z.string().optional(),
  created: z.string()
});
var STATE_KINDS = [
  "host",
  "stack",
  "service",
  "container",
  "serviceLink",
  "containerLink",
  "certificate"
];
var STATE_SCHEMAS = {
  host: Host,
  stack: Stack,
  service: Service,
  container: Container,
  serviceLink: ServiceLink,
  containerLink: ContainerLink,
  certificate: Certificate
};

// src/model/state.ts
import { z as z2 } from "zod";
var COLLECTION_OF = {
  host: "hosts",
  stack: "stacks",
  service: "services",
  container: "containers",
  serviceLink: "serviceLinks",
  containerLink: "containerLinks",
  certificate: "certificates"
};
var StateKindSchema = z2.enum(STATE_KINDS);
var Change = z2.discriminatedUnion("op", [
  z2.object({ op: z2.literal("upsert"), kind: StateKindSchema, id: z2.string(), data: z2.unknown() }),
  z2.object({ op: z2.literal("remove"), kind: StateKindSchema, id: z2.string() })
]);
var Snapshot = z2.object({
  environment: Environment,
  resources: z2.object(
    Object.fromEntries(STATE_KINDS.map((k) => [COLLECTION_OF[k], z2.array(STATE_SCHEMAS[k])]))
  )
});
var WatchResponse = z2.object({
  revision: z2.number().int().min(0),
  /** Present when the agent must replace its state (first sync, or its revision is no longer in the log). */
  snapshot: Snapshot.optional(),
  /** Changes after the asked revision, one per resource (the latest form), when no snapshot is sent. */
  changes: z2.array(Change).default([]),
  /** The environment record changed (network settings, name); included whenever it did. */
  environment: Environment.optional()
});
function emptyState(environment) {
  return {
    revision: 0,
    environment,
    hosts: /* @__PURE__ */ new Map(),
    stacks: /* @__PURE__ */ new Map(),
    services: /* @__PURE__ */ new Map(),
    containers: /* @__PURE__ */ new Map(),
    serviceLinks: /* @__PURE__ */ new Map(),
    containerLinks: /* @__PURE__ */ new Map(),
    certificates: /* @__PURE__ */ new Map()
  };
}

// bench/metadata-state.ts
var CREATED = "2024-01-01T00:00:00.000Z";
function ipOf(n) {
  return `10.42.${Math.floor(n / 250)}.${n % 250 + 2}`;
}
function largeState(containers, selfIp = "127.0.0.1") {
  const env = Environment.parse({ id: "e1", uuid: "env-bench", name: "Bench", state: "active", network: {}, created: CREATED });
  const st2 = emptyState(env);
  st2.revision = 1;
  const hosts = 20;
  const stacks = 10;
  const perService = 50;
  for (let h = 0; h < hosts; h++) {
    st2.hosts.set(`h${h}`, Host.parse({
      id: `h${h}`,
      uuid: `uuid-h${h}`,
      environmentId: "e1",
      name: `host-${h}`,
      hostname: `host-${h}.bench`,
      agentIpAddress: `192.168.1.${h + 1}`,
      labels: { zone: `z${h % 3}` },
      state: "active",
      agentState: "active",
      created: CREATED
    }));
  }
  for (let s = 0; s < stacks; s++) {
    st2.stacks.set(`st${s}`, Stack.parse({ id: `st${s}`, uuid: `uuid-st${s}`, environmentId: "e1", name: `Stack${s}`, state: "active", created: CREATED }));
  }
  const services = Math.ceil(containers / perService);
  for (let i = 0; i < services; i++) {
    const sidekick = i % 10 === 0;
    st2.services.set(`sv${i}`, Service.parse({
      id: `sv${i}`,
      uuid: `uuid-sv${i}`,
      environmentId: "e1",
      stackId: `st${i % stacks}`,
      name: `svc${i}`,
      kind: "service",
      state: "active",
      scale: perService,
      launchConfig: {
        image: "nginx",
        labels: { app: `svc${i}`, "io.rancher.stack.name": `Stack${i % stacks}` },
        ports: [{ publicPort: 1e4 + i, privatePort: 80, protocol: "tcp" }]
      },
      secondaryLaunchConfigs: sidekick ? [{ name: "side", image: "busybox" }] : [],
      metadata: { team: `t${i % 7}`, weight: i },
      created: CREATED
    }));
    if (i > 0) {
      st2.serviceLinks.set(`sl${i}`, ServiceLink.parse({ id: `sl${i}`, environmentId: "e1", serviceId: `sv${i}`, consumedServiceId: `sv${i - 1}`, name: "upstream", created: CREATED }));
    }
  }
  for (let n = 0; n < containers; n++) {
    const svc = Math.floor(n / perService);
    const idx = n % perService + 1;
    const sidekick = svc % 10 === 0 && idx % 2 === 0;
    st2.containers.set(`c${n}`, Container.parse({
      id: `c${n}`,
      uuid: `uuid-c${n}`,
      environmentId: "e1",
      hostId: `h${n % hosts}`,
      stackId: `st${svc % stacks}`,
      serviceId: `sv${svc}`,
      name: `Stack${svc % stacks}-svc${svc}-${sidekick ? "side-" : ""}${idx}`,
      launchConfigName: sidekick ? "side" : "",
      serviceIndex: idx,
      createIndex: idx,
      deploymentUnitUuid: null,
      primaryIpAddress: n === 0 ? selfIp : ipOf(n),
      state: "running",
      desiredState: "running",
      startCount: 1,
      config: { image: "nginx", labels: { app: `svc${svc}` }, ports: [{ publicPort: 1e4 + svc, privatePort: 80, protocol: "tcp" }] },
      created: CREATED
    }));
  }
  return st2;
}

// src/metadata/tree.ts
import { createHash, createHmac } from "node:crypto";

// src/metadata/answers.ts
import { parse as parseYaml } from "yaml";
import { z as z3 } from "zod";
var DEFAULT_CLIENT = "default";
var LATEST_VERSION = "latest";
var MAX_DEPTH = 256;
function jsonProblem(value, path = "$") {
  const ancestors = /* @__PURE__ */ new Set();
  const visit = (v, at, depth) => {
    switch (typeof v) {
      case "string":
      case "boolean":
        return void 0;
      case "number":
        return Number.isFinite(v) ? void 0 : `${at}: numbers must be finite (got ${String(v)})`;
      case "object": {
        if (v === null) return void 0;
        if (depth > MAX_DEPTH) return `${at}: nested more than ${MAX_DEPTH} levels deep`;
        if (ancestors.has(v)) return `${at}: refers to itself (recursive alias)`;
        const proto = Object.getPrototypeOf(v);
        const isArray = Array.isArray(v);
        if (!isArray && proto !== Object.prototype && proto !== null) {
          return `${at}: unsupported value of type ${v.constructor?.name ?? "object"}`;
        }
        ancestors.add(v);
        try {
          if (isArray) {
            for (let i = 0; i < v.length; i++) {
              const p = visit(v[i], `${at}[${i}]`, depth + 1);
              if (p) return p;
            }
          } else {
            for (const [k, child] of Object.entries(v)) {
              const p = visit(child, `${at}.${JSON.stringify(k)}`, depth + 1);
              if (p) return p;
            }
          }
        } finally {
          ancestors.delete(v);
        }
        return void 0;
      }
      default:
        return `${at}: unsupported value of type ${typeof v}`;
    }
  };
  return visit(value, path, 0);
}
var ClientTree = z3.unknown().superRefine((v, ctx) => {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    ctx.addIssue({ code: "custom", message: "must be a map (the tree served to that client)" });
    return;
  }
  const problem = jsonProblem(v, "tree");
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});
var AnswersFileSchema = z3.record(
  z3.string(),
  z3.record(z3.string(), ClientTree, { error: 'must be a map of "<clientIp>" | "default" to a tree' }),
  { error: 'must be a map of "<version>" to a map of clients' }
);

// src/metadata/tree.ts
var METADATA_VERSIONS = ["2015-07-25", "2015-12-19", "2016-07-29"];
var TREE_FORMAT = "drover-metadata-1";
var GONE_STATES = /* @__PURE__ */ new Set(["removed", "removing", "purged", "purging"]);
function isListedContainer(c) {
  return c.desiredState !== "removed" && c.generation !== "previous" && !GONE_STATES.has(c.state);
}
function byNameThenUuid(a, b) {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0;
}
function deriveUuid(seed) {
  const h = createHash("sha1").update(seed).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${(parseInt(h.slice(16, 18), 16) & 63 | 128).toString(16)}${h.slice(18, 20)}-${h.slice(20, 32)}`;
}
function serviceToken(key, serviceUuid) {
  return createHmac("sha256", key).update(`drover-metadata-service-token:${serviceUuid}`).digest("hex");
}
function metadataVersionString(state, hostId) {
  const h = createHash("sha256").update(`${TREE_FORMAT}\0${state.environment.uuid}\0${hostId}`).digest("hex");
  return `${state.revision}-${h.slice(0, 16)}`;
}
function portString(p, hostIp) {
  return `${hostIp}:${p.publicPort}:${p.privatePort}/${p.protocol}`;
}
function servicePorts(lc) {
  if (!lc) return [];
  return lc.ports.map(
    (p) => p.publicPort === void 0 ? `${p.privatePort}/${p.protocol}` : `${p.hostIp ? `${p.hostIp}:` : ""}${p.publicPort}:${p.privatePort}/${p.protocol}`
  );
}
function exposeStrings(lc) {
  return lc ? lc.expose.map((p) => `${p.privatePort}/${p.protocol}`) : [];
}
var familyOf = (v) => v === "2016-07-29" ? "new" : "old";
function buildMetadataAnswers(state, opts) {
  const env = state.environment;
  const tokenKey = opts.tokenKey ?? env.uuid;
  const version = metadataVersionString(state, opts.hostId);
  const managedNetworkUuid = deriveUuid(`${env.uuid}:managed-network`);
  const hosts = [...state.hosts.values()].filter((h) => !GONE_STATES.has(h.state)).sort(byNameThenUuid);
  const hostById = new Map(hosts.map((h) => [h.id, h]));
  const stacks = [...state.stacks.values()].filter((s) => !GONE_STATES.has(s.state)).sort(byNameThenUuid);
  const stackById = new Map(stacks.map((s) => [s.id, s]));
  const services = [...state.services.values()].filter((s) => !GONE_STATES.has(s.state) && stackById.has(s.stackId)).sort(byNameThenUuid);
  const serviceById = new Map(services.map((s) => [s.id, s]));
  const containers = [...state.containers.values()].filter(isListedContainer).sort(byNameThenUuid);
  const containerUuidById = /* @__PURE__ */ new Map();
  for (const c of state.containers.values()) containerUuidById.set(c.id, c.uuid);
  const byUnit = /* @__PURE__ */ new Map();
  for (const c of containers) {
    if (c.serviceId === null || !serviceById.has(c.serviceId)) continue;
    const k = `${c.serviceId}\0${c.launchConfigName}`;
    let list = byUnit.get(k);
    if (!list) byUnit.set(k, list = []);
    list.push(c);
  }
  for (const list of byUnit.values()) {
    list.sort((a, b) => (a.serviceIndex ?? 0) - (b.serviceIndex ?? 0) || byNameThenUuid(a, b));
  }
  const containerLinks = /* @__PURE__ */ new Map();
  for (const l of state.containerLinks.values()) {
    const target = containerUuidById.get(l.targetContainerId);
    if (target === void 0) continue;
    let list = containerLinks.get(l.containerId);
    if (!list) containerLinks.set(l.containerId, list = []);
    list.push([l.name, target]);
  }
  const serviceLinks = /* @__PURE__ */ new Map();
  for (const l of state.serviceLinks.values()) {
    const target = serviceById.get(l.consumedServiceId);
    const targetStack = target ? stackById.get(target.stackId) : void 0;
    if (!target || !targetStack) continue;
    let list = serviceLinks.get(l.serviceId);
    if (!list) serviceLinks.set(l.serviceId, list = []);
    list.push([`${targetStack.name}/${target.name}`, l.name || target.name]);
  }
  const entries = [];
  const entryByUnit = /* @__PURE__ */ new Map();
  const entriesByStack = /* @__PURE__ */ new Map();
  const sortedServices = [...services].sort((a, b) => {
    const sa = stackById.get(a.stackId);
    const sb = stackById.get(b.stackId);
    return byNameThenUuid(sa, sb) || byNameThenUuid(a, b);
  });
  for (const service of sortedServices) {
    const stack = stackById.get(service.stackId);
    const units = [["", service.launchConfig]];
    for (const lc of service.secondaryLaunchConfigs) if (lc.name) units.push([lc.name, lc]);
    for (const [lcName, lc] of units) {
      const e = { service, stack, lcName, lc, containers: byUnit.get(`${service.id}\0${lcName}`) ?? [] };
      entries.push(e);
      entryByUnit.set(`${service.id}\0${lcName}`, e);
      let list = entriesByStack.get(stack.id);
      if (!list) entriesByStack.set(stack.id, list = []);
      list.push(e);
    }
  }
  const lower = (f) => f === "new" ? (s) => s.toLowerCase() : (s) => s;
  const hostObj = (h, f) => {
    const o = {
      agent_ip: h.agentIpAddress,
      agent_state: h.agentState,
      environment_uuid: env.uuid
    };
    if (f === "old") o.hostId = h.id;
    o.hostname = h.hostname;
    o.labels = { ...h.labels };
    o.local_storage_mb = h.localStorageMb ?? null;
    o.memory = h.memory ?? null;
    o.milli_cpu = h.milliCpu ?? null;
    o.name = h.name;
    o.state = h.state;
    o.uuid = h.uuid;
    return o;
  };
  const containerObj = (c, f) => {
    const nm = lower(f);
    const host = c.hostId !== null ? hostById.get(c.hostId) : void 0;
    const service = c.serviceId !== null ? serviceById.get(c.serviceId) : void 0;
    const stack = service ? stackById.get(service.stackId) : c.stackId !== null ? stackById.get(c.stackId) : void 0;
    const defaultIp = f === "old" ? host?.agentIpAddress ?? "0.0.0.0" : "0.0.0.0";
    const ports = [];
    for (const p of c.config.ports) {
      if (p.publicPort === void 0) continue;
      const ip = p.hostIp && !(f === "old" && p.hostIp === "0.0.0.0") ? p.hostIp : defaultIp;
      ports.push(portString(p, ip));
    }
    const links = {};
    for (const [name, uuid] of containerLinks.get(c.id) ?? []) links[nm(name)] = uuid;
    const managed = c.config.networkMode === "managed";
    return {
      create_index: service ? c.createIndex : null,
      dns: [...c.config.dns],
      dns_search: [...c.config.dnsSearch],
      environment_uuid: env.uuid,
      external_id: c.externalId,
      health_state: c.healthState,
      host_uuid: host?.uuid ?? null,
      hostname: c.config.hostname ?? c.name,
      ips: c.primaryIpAddress ? [c.primaryIpAddress] : [],
      labels: { ...c.config.labels },
      links,
      memory_reservation: c.config.memoryReservation ?? null,
      milli_cpu_reservation: c.config.milliCpuReservation ?? null,
      name: nm(c.name),
      network_uuid: managed ? managedNetworkUuid : null,
      ports,
      primary_ip: c.primaryIpAddress,
      primary_mac_address: null,
      service_index: c.serviceIndex !== null ? String(c.serviceIndex) : null,
      service_name: service ? nm(c.launchConfigName || service.name) : null,
      service_uuid: service ? service.uuid : null,
      stack_name: stack ? nm(stack.name) : null,
      stack_uuid: stack ? stack.uuid : null,
      start_count: c.startCount,
      state: c.state,
      system: stack?.system ?? false,
      uuid: c.uuid
    };
  };
  const hostObjs = { old: /* @__PURE__ */ new Map(), new: /* @__PURE__ */ new Map() };
  const containerObjs = { old: /* @__PURE__ */ new Map(), new: /* @__PURE__ */ new Map() };
  for (const f of ["old", "new"]) {
    for (const h of hosts) hostObjs[f].set(h.id, hostObj(h, f));
    for (const c of containers) containerObjs[f].set(c.id, containerObj(c, f));
  }
  const portRuleObj = (e, nm, r) => {
    let target = null;
    const ts = r.serviceId !== void 0 ? serviceById.get(r.serviceId) : void 0;
    const tst = ts ? stackById.get(ts.stackId) : void 0;
    if (ts && tst) target = `${nm(tst.name)}/${nm(ts.name)}`;
    else if (r.service) target = r.service.includes("/") ? nm(r.service) : `${nm(e.stack.name)}/${nm(r.service)}`;
    return {
      backend_name: r.backendName ?? null,
      container: null,
      container_uuid: null,
      hostname: r.hostname ?? null,
      path: r.path ?? null,
      priority: r.priority ?? null,
      protocol: r.protocol,
      selector: r.selector ?? null,
      service: target,
      source_port: r.sourcePort,
      target_port: r.targetPort ?? null
    };
  };
  const serviceObj = (e, v) => {
    const f = familyOf(v);
    const nm = lower(f);
    const { service: s, stack, lc } = e;
    const objs = containerObjs[f];
    const hc = s.healthCheck;
    const lb = s.lbConfig;
    const links = {};
    for (const [k, alias] of serviceLinks.get(s.id) ?? []) links[nm(k)] = alias;
    return {
      containers: v === "2015-07-25" ? e.containers.map((c) => c.name) : e.containers.map((c) => objs.get(c.id)),
      create_index: s.createIndex,
      environment_uuid: env.uuid,
      expose: exposeStrings(lc),
      external_ips: [...s.externalIpAddresses],
      fqdn: s.fqdn ?? null,
      health_check: hc ? {
        healthy_threshold: hc.healthyThreshold,
        interval: hc.interval,
        port: hc.port,
        request_line: hc.requestLine ?? null,
        response_timeout: hc.responseTimeout,
        unhealthy_threshold: hc.unhealthyThreshold
      } : null,
      hostname: s.hostname ?? null,
      kind: s.kind,
      labels: { ...lc?.labels ?? {} },
      lb_config: s.kind === "loadBalancerService" && lb ? {
        certificate_ids: [...lb.certificateIds],
        config: lb.config ?? null,
        default_certificate_id: lb.defaultCertificateId ?? null,
        port_rules: lb.portRules.map((r) => portRuleObj(e, nm, r)),
        stickiness_policy: { ...lb.stickinessPolicy ?? {} }
      } : null,
      links,
      metadata: userMetadata(s),
      name: nm(e.lcName || s.name),
      ports: servicePorts(lc),
      primary_service_name: nm(s.name),
      scale: s.scale,
      sidekicks: e.lcName === "" ? s.secondaryLaunchConfigs.flatMap((x) => x.name ? [nm(x.name)] : []) : [],
      stack_name: nm(stack.name),
      stack_uuid: stack.uuid,
      state: s.state,
      system: stack.system || s.system,
      token: null,
      uuid: s.uuid,
      vip: s.vip ?? null
    };
  };
  const metadataCache = /* @__PURE__ */ new Map();
  const userMetadata = (s) => {
    let m = metadataCache.get(s.id);
    if (m === void 0) metadataCache.set(s.id, m = jsonSafeMap(s.metadata));
    return m;
  };
  const tokens = /* @__PURE__ */ new Map();
  const tokenOf = (uuid) => {
    let t = tokens.get(uuid);
    if (t === void 0) tokens.set(uuid, t = serviceToken(tokenKey, uuid));
    return t;
  };
  const clients = clientContainers(containers);
  const out = {};
  for (const v of METADATA_VERSIONS) {
    const f = familyOf(v);
    const nm = lower(f);
    const svcObjs = new Map(entries.map((e) => [e, serviceObj(e, v)]));
    const stackObjs = /* @__PURE__ */ new Map();
    for (const st2 of stacks) {
      const list = entriesByStack.get(st2.id) ?? [];
      stackObjs.set(st2.id, {
        environment_name: env.name,
        environment_uuid: env.uuid,
        name: nm(st2.name),
        services: v === "2015-07-25" ? list.map((e) => nm(e.lcName || e.service.name)) : list.map((e) => svcObjs.get(e)),
        system: st2.system,
        uuid: st2.uuid
      });
    }
    const shared = {
      containers: containers.map((c) => containerObjs[f].get(c.id)),
      ...v === "2016-07-29" ? { environments: [{ description: env.description, name: env.name, state: env.state, uuid: env.uuid }] } : {},
      hosts: hosts.map((h) => hostObjs[f].get(h.id)),
      name: env.name
    };
    const tail = {
      services: entries.map((e) => svcObjs.get(e)),
      stacks: stacks.map((s) => stackObjs.get(s.id)),
      uuid: env.uuid,
      version
    };
    const answers = {};
    answers[DEFAULT_CLIENT] = { ...shared, self: { host: hostObjs[f].get(opts.hostId) ?? null }, ...tail };
    const selfServices = /* @__PURE__ */ new Map();
    for (const c of clients) {
      const e = c.serviceId !== null ? entryByUnit.get(`${c.serviceId}\0${c.launchConfigName}`) : void 0;
      let selfService = null;
      if (e) {
        selfService = selfServices.get(e) ?? null;
        if (selfService === null) {
          selfService = { ...svcObjs.get(e), token: tokenOf(e.service.uuid) };
          selfServices.set(e, selfService);
        }
      }
      const stackId = e ? e.stack.id : c.stackId;
      answers[c.primaryIpAddress] = {
        ...shared,
        self: {
          container: containerObjs[f].get(c.id),
          host: (c.hostId !== null ? hostObjs[f].get(c.hostId) : void 0) ?? null,
          service: selfService,
          stack: (stackId !== null ? stackObjs.get(stackId) : void 0) ?? null
        },
        ...tail
      };
    }
    out[v] = answers;
  }
  out[LATEST_VERSION] = out["2016-07-29"];
  return out;
}
function jsonSafeMap(m) {
  const copy = JSON.parse(JSON.stringify(m, (_k, v) => typeof v === "bigint" ? Number(v) : v) ?? "{}");
  return typeof copy === "object" && copy !== null && !Array.isArray(copy) ? copy : {};
}
function clientContainers(listed) {
  const byIp = /* @__PURE__ */ new Map();
  for (const c of listed) {
    if (c.primaryIpAddress === null || c.config.networkMode !== "managed") continue;
    const cur = byIp.get(c.primaryIpAddress);
    if (cur === void 0 || preferred(c, cur)) byIp.set(c.primaryIpAddress, c);
  }
  return [...byIp.values()];
}
function preferred(a, b) {
  const ra = a.state === "running" ? 1 : 0;
  const rb = b.state === "running" ? 1 : 0;
  if (ra !== rb) return ra > rb;
  if (a.created !== b.created) return a.created > b.created;
  return a.uuid > b.uuid;
}

// ../../tmp/t3.ts
var st = largeState(1e4);
var g = globalThis.gc;
for (let i = 0; i < 8; i++) {
  g();
  const t = performance.now();
  const a = buildMetadataAnswers(st, { hostId: "h0" });
  console.log("build ms", (performance.now() - t).toFixed(1), Object.keys(a.latest).length);
}

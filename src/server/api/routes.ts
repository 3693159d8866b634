// The /v1 API: resource collections, actions, registration and the agent endpoints.
import { issueHostCertificate, revokeHostCertificate } from '../domain/host-ca.js';
import { Router } from '@koa/router';
import type { Context, Next } from 'koa';
import type { Store } from '../db/store.js';
import { nowIso } from '../db/store.js';
import { ForbiddenError, NotFoundError, UnauthorizedError, ValidationError } from '../../common/errors.js';
import { accessTarget, execPath, type AccessTickets } from './access-proxy.js';
import { parseCatalog } from '../compose/index.js';
import {
  authenticate,
  createApiKey,
  createRegistrationToken,
  deleteApiKey,
  getApiKey,
  getRegistrationToken,
  listApiKeys,
  listRegistrationTokens,
  parseBasicAuth,
  revokeRegistrationToken,
  setApiKeyState,
  verifyRegistrationToken,
  type Principal,
} from '../auth/credentials.js';
import { collection, parseBody, resource, type ApiContext, type ResourceDef } from './http.js';
import * as R from './resources.js';
import * as S from './schemas.js';
import {
  createEnvironment,
  defaultEnvironment,
  deleteEnvironment,
  registerAgent,
  removeHost,
  setHostActive,
  updateEnvironment,
  updateHost,
} from '../domain/environments.js';
import { Offloader } from './offload.js';
import {
  finishUpgradeService,
  removeService,
  restartService,
  rollback,
  setServiceActive,
  setServiceLinks,
  upgrade,
  UpgradeDriver,
} from '../domain/services.js';
import {
  adoptContainer,
  applyContainerReports,
  createContainer,
  createContainerLink,
  removeContainer,
  setContainerDesired,
} from '../domain/containers.js';
import { adoptFound } from '../domain/adopt-found.js';
import { createCertificate, removeCertificate, updateCertificate } from '../domain/certificates.js';
import { StatusPublisher, containerWithStatus, containersWithStatus } from '../domain/status.js';
import type { WatchHub } from '../sync/watch.js';
import type { StoredKind } from '../db/store.js';
import { VERSION } from '../../common/version.js';

export interface RouteDeps {
  store: Store;
  hub: WatchHub;
  /** URL agents should use to reach this server (for the registration command). */
  advertiseUrl: () => string;
  agentImage: string;
  maxWatchSeconds: number;
  /** Window in which container reports are gathered before their facts are published (ms, default 250). */
  statusCoalesceMs?: number;
  /** One-use tokens of the websockets a browser opens (the access proxy takes them). */
  accessTickets: AccessTickets;
}

const principal = (ctx: ApiContext): Principal => ctx.state.principal as Principal;

/** Authenticates every request but the anonymous ones; agents may use only the agent endpoints. */
export function authMiddleware(store: Store) {
  const anonymous = (ctx: Context) =>
    ctx.path === '/v1/version' || ctx.path === '/v1/agent/register' || ctx.path.startsWith('/v1/scripts/') || ctx.path === '/healthz';
  return async (ctx: ApiContext, next: Next) => {
    if (anonymous(ctx)) return next();
    const creds = parseBasicAuth(ctx.get('authorization'));
    if (!creds) throw new UnauthorizedError();
    const p = authenticate(store, creds.accessKey, creds.secretKey);
    if (p.role === 'agent' && !ctx.path.startsWith('/v1/agent/')) {
      throw new ForbiddenError('agent credentials can only be used on /v1/agent/* endpoints');
    }
    ctx.state.principal = p;
    return next();
  };
}

function envIdOf(ctx: ApiContext, store: Store, given?: string): string {
  const id = given ?? (ctx.query.environmentId as string | undefined) ?? ctx.get('x-api-project-id') ?? '';
  if (!id) return defaultEnvironment(store).id;
  store.mustGet('environment', id);
  return id;
}

function listOf<K extends StoredKind>(ctx: ApiContext, store: Store, kind: K) {
  const envId = (ctx.query.environmentId as string | undefined) ?? (ctx.get('x-api-project-id') || undefined);
  return envId ? store.list(kind, { env_id: envId }) : store.list(kind);
}

function send(ctx: ApiContext, def: ResourceDef, doc: object, status = 200) {
  ctx.status = status;
  ctx.body = resource(ctx, def, doc);
}

function actionOf(ctx: ApiContext): string {
  const a = ctx.query.action;
  if (typeof a !== 'string' || !a) throw new ValidationError('MissingAction', 'POST on a resource needs ?action=<name>', 'action');
  return a;
}

function unknownAction(def: ResourceDef, action: string): never {
  throw new ValidationError('InvalidAction', `${def.type} has no action "${action}"`, 'action');
}

export function buildRouter(deps: RouteDeps): Router {
  const { store } = deps;
  const r = new Router({ prefix: '/v1' });
  // Large imports and scales run off the event loop; mutations take turns (src/server/api/offload.ts).
  const offload = new Offloader(store);
  r.use(async (ctx, next) => {
    if (ctx.method === 'GET' || ctx.method === 'HEAD' || ctx.method === 'OPTIONS') return next();
    return offload.exclusive(next);
  });
  // Observed container state is published into the documents once per window, as a writer in turn.
  const publisher = new StatusPublisher(store, {
    coalesceMs: deps.statusCoalesceMs ?? 250,
    exclusive: (fn) => offload.exclusive(fn),
  });
  // Batched upgrades move on when a batch serves (reported status) and its interval has passed.
  const upgrades = new UpgradeDriver(store, { exclusive: (fn) => offload.exclusive(fn) });

  // A shell or stats stream for a browser (it cannot send Authorization on a websocket): the URL to open
  // and a one-use token for it (AccessTickets); the API's errors (no host yet, no Docker container) now.
  // (Only admin keys get here: authMiddleware keeps agent keys to /v1/agent/*.)
  const hostAccess = (ctx: ApiContext, path: string) => {
    accessTarget(store, path);
    const ws = `${ctx.protocol === 'https' ? 'wss' : 'ws'}://${ctx.host}`;
    ctx.body = { type: 'hostAccess', url: ws + path, token: deps.accessTickets.issue(path) };
  };
  r.get('/version', (ctx) => {
    ctx.body = { type: 'version', version: VERSION, apiVersion: 'v1' };
  });

  r.get('/', (ctx) => {
    const base = `${ctx.protocol}://${ctx.host}/v1`;
    const colls = ['environments', 'hosts', 'registrationtokens', 'apikeys', 'stacks', 'services', 'containers', 'servicelinks', 'containerlinks', 'certificates'];
    ctx.body = { type: 'apiRoot', id: 'v1', links: Object.fromEntries([['self', base], ...colls.map((c) => [c, `${base}/${c}`])]) };
  });

  // ---- environments ----------------------------------------------------------------------------
  for (const coll of ['environments', 'projects']) {
    r.get(`/${coll}`, (ctx) => {
      ctx.body = collection(ctx, R.ENVIRONMENT, store.list('environment').map((e) => R.environmentView(store, e)), R.FIELDS.environment);
    });
    r.post(`/${coll}`, (ctx) => {
      const b = parseBody(ctx, S.EnvironmentCreate);
      send(ctx, R.ENVIRONMENT, R.environmentView(store, createEnvironment(store, b)), 201);
    });
    r.get(`/${coll}/:id`, (ctx) => send(ctx, R.ENVIRONMENT, R.environmentView(store, store.mustGet('environment', pid(ctx)))));
    r.put(`/${coll}/:id`, (ctx) => {
      const b = parseBody(ctx, S.EnvironmentUpdate);
      send(ctx, R.ENVIRONMENT, R.environmentView(store, updateEnvironment(store, pid(ctx), b)));
    });
    r.delete(`/${coll}/:id`, (ctx) => {
      deleteEnvironment(store, pid(ctx));
      ctx.status = 204;
    });
    r.get(`/${coll}/:id/watch`, async (ctx) => watch(ctx, deps, pid(ctx)));
  }

  // ---- hosts -----------------------------------------------------------------------------------
  r.get('/hosts', (ctx) => {
    ctx.body = collection(ctx, R.HOST, listOf(ctx, store, 'host').map((h) => R.hostWithStatus(store, h)), R.FIELDS.host);
  });
  r.get('/hosts/:id', (ctx) => send(ctx, R.HOST, R.hostWithStatus(store, store.mustGet('host', pid(ctx)))));
  r.put('/hosts/:id', (ctx) => send(ctx, R.HOST, updateHost(store, pid(ctx), parseBody(ctx, S.HostUpdate))));
  r.delete('/hosts/:id', (ctx) => {
    removeHost(store, pid(ctx));
    ctx.status = 204;
  });
  r.post('/hosts/:id', (ctx) => {
    const a = actionOf(ctx);
    if (a === 'revokecertificate') return send(ctx, R.HOST, R.hostWithStatus(store, revokeHostCertificate(store, pid(ctx))));
    if (a === 'stats') return hostAccess(ctx, `/v1/hosts/${encodeURIComponent(store.mustGet('host', pid(ctx)).id)}/stats`);
    if (a !== 'activate' && a !== 'deactivate') unknownAction(R.HOST, a);
    send(ctx, R.HOST, setHostActive(store, pid(ctx), a === 'activate'));
  });

  // ---- registration tokens and API keys --------------------------------------------------------
  const tokenView = (t: ReturnType<typeof createRegistrationToken>) => ({
    id: t.id,
    environmentId: t.envId,
    accessKey: t.accessKey,
    state: t.state,
    created: t.created,
    token: t.token,
    registrationUrl: `${deps.advertiseUrl()}/v1/scripts/${t.token}`,
    // Detached and restarted with the host: the agent container is the host's agent from then on.
    command: `sudo docker run -d --restart unless-stopped --name drover-agent --privileged --net=host --pid=host -v /var/run/docker.sock:/var/run/docker.sock -v /var/lib/drover:/var/lib/drover ${deps.agentImage} ${deps.advertiseUrl()}/v1/scripts/${t.token}`,
  });
  r.get('/registrationtokens', (ctx) => {
    const envId = ctx.query.environmentId as string | undefined;
    ctx.body = collection(ctx, R.REGISTRATION_TOKEN, listRegistrationTokens(store, envId).map(tokenView), [...R.FIELDS.registrationToken]);
  });
  r.post('/registrationtokens', (ctx) => {
    const b = parseBody(ctx, S.RegistrationTokenCreate);
    send(ctx, R.REGISTRATION_TOKEN, tokenView(createRegistrationToken(store, envIdOf(ctx, store, b.environmentId))), 201);
  });
  r.get('/registrationtokens/:id', (ctx) => {
    const t = getRegistrationToken(store, pid(ctx));
    if (!t) throw new NotFoundError('registrationToken', pid(ctx));
    send(ctx, R.REGISTRATION_TOKEN, tokenView(t));
  });
  const revoke = (ctx: ApiContext & { params: Record<string, string | undefined> }) => {
    if (!revokeRegistrationToken(store, pid(ctx))) throw new NotFoundError('registrationToken', pid(ctx));
    send(ctx, R.REGISTRATION_TOKEN, tokenView(getRegistrationToken(store, pid(ctx))!));
  };
  r.post('/registrationtokens/:id', (ctx) => {
    const a = actionOf(ctx);
    if (a !== 'deactivate') unknownAction(R.REGISTRATION_TOKEN, a);
    revoke(ctx);
  });
  r.delete('/registrationtokens/:id', revoke);

  const keyView = (k: ReturnType<typeof listApiKeys>[number] & { secretKey?: string }) => ({
    id: k.id,
    name: k.name,
    role: k.role,
    environmentId: k.envId,
    hostId: k.hostId,
    accessKey: k.accessKey,
    state: k.state,
    created: k.created,
    ...(k.secretKey ? { secretKey: k.secretKey } : {}),
  });
  r.get('/apikeys', (ctx) => {
    ctx.body = collection(ctx, R.API_KEY, listApiKeys(store).map(keyView), R.FIELDS.apiKey);
  });
  r.post('/apikeys', (ctx) => {
    const b = parseBody(ctx, S.ApiKeyCreate);
    send(ctx, R.API_KEY, keyView(createApiKey(store, { ...b, role: 'admin' })), 201);
  });
  r.get('/apikeys/:id', (ctx) => {
    const k = getApiKey(store, pid(ctx));
    if (!k) throw new NotFoundError('apiKey', pid(ctx));
    send(ctx, R.API_KEY, keyView(k));
  });
  r.post('/apikeys/:id', (ctx) => {
    const a = actionOf(ctx);
    if (a !== 'activate' && a !== 'deactivate') unknownAction(R.API_KEY, a);
    if (!getApiKey(store, pid(ctx))) throw new NotFoundError('apiKey', pid(ctx));
    if (a === 'deactivate' && pid(ctx) === principal(ctx).keyId) {
      throw new ValidationError('SelfLockout', 'a key cannot deactivate itself');
    }
    setApiKeyState(store, pid(ctx), a === 'activate' ? 'active' : 'inactive');
    send(ctx, R.API_KEY, keyView(getApiKey(store, pid(ctx))!));
  });
  r.delete('/apikeys/:id', (ctx) => {
    if (pid(ctx) === principal(ctx).keyId) throw new ValidationError('SelfLockout', 'a key cannot delete itself');
    if (!deleteApiKey(store, pid(ctx))) throw new NotFoundError('apiKey', pid(ctx));
    ctx.status = 204;
  });

  // ---- stacks ----------------------------------------------------------------------------------
  r.get('/stacks', (ctx) => {
    ctx.body = collection(ctx, R.STACK, listOf(ctx, store, 'stack'), R.FIELDS.stack);
  });
  r.post('/stacks', async (ctx) => {
    if (ctx.query.action !== undefined) {
      // A collection action: the catalog questions of a rancher-compose file (nothing is created).
      if (ctx.query.action !== 'questions') unknownAction(R.STACK, String(ctx.query.action));
      const q = parseCatalog(parseBody(ctx, S.StackQuestions).rancherCompose);
      ctx.body = { type: 'catalogQuestions', ...(q ?? { questions: [] }) };
      return;
    }
    const b = parseBody(ctx, S.StackCreate);
    const answers = { ...(b.environment ?? {}), ...(b.answers ?? {}) };
    const stack = await offload.run({
      op: 'createStack',
      input: {
      environmentId: envIdOf(ctx, store, b.environmentId),
      name: b.name,
      ...(b.description !== undefined ? { description: b.description } : {}),
      ...(b.dockerCompose !== undefined ? { dockerCompose: b.dockerCompose } : {}),
      ...(b.rancherCompose !== undefined ? { rancherCompose: b.rancherCompose } : {}),
      answers,
      ...(b.externalId ? { externalId: b.externalId } : {}),
      ...(b.startOnCreate !== undefined ? { startOnCreate: b.startOnCreate } : {}),
      ...(b.pull ? { pull: true } : {}),
      },
    });
    send(ctx, R.STACK, stack, 201);
  });
  r.get('/stacks/:id', (ctx) => send(ctx, R.STACK, store.mustGet('stack', pid(ctx))));
  r.delete('/stacks/:id', async (ctx) => {
    await offload.run({ op: 'removeStack', stackId: pid(ctx) });
    ctx.status = 204;
  });
  r.post('/stacks/:id', async (ctx) => {
    const a = actionOf(ctx);
    if (a === 'exportconfig') {
      const files = await offload.run({ op: 'exportStack', stackId: pid(ctx) });
      ctx.body = { type: 'composeConfig', dockerComposeConfig: files.dockerCompose, rancherComposeConfig: files.rancherCompose };
    } else if (a === 'addservices') {
      const b = parseBody(ctx, S.StackAddServices);
      const added = await offload.run({
        op: 'addToStack',
        stackId: pid(ctx),
        input: {
          dockerCompose: b.dockerCompose,
          ...(b.rancherCompose !== undefined ? { rancherCompose: b.rancherCompose } : {}),
          ...(b.answers ? { answers: b.answers } : {}),
        },
      });
      ctx.body = collection(ctx, R.SERVICE, added, R.FIELDS.service);
    } else if (a === 'up') {
      const b = parseBody(ctx, S.StackUp);
      const strategy = {
        ...(b.batchSize !== undefined ? { batchSize: b.batchSize } : {}),
        ...(b.intervalMillis !== undefined ? { intervalMillis: b.intervalMillis } : {}),
      };
      const services = await offload.run({
        op: 'upStack',
        stackId: pid(ctx),
        input: {
          dockerCompose: b.dockerCompose,
          ...(b.rancherCompose !== undefined ? { rancherCompose: b.rancherCompose } : {}),
          ...(b.answers ? { answers: b.answers } : {}),
          upgrade: b.upgrade,
          forceUpgrade: b.forceUpgrade,
          pull: b.pull,
          ...(Object.keys(strategy).length ? { strategy } : {}),
        },
      });
      if (services.some((s) => s.change === 'upgraded')) upgrades.poke();
      ctx.body = { type: 'stackUp', stackId: pid(ctx), services };
    } else unknownAction(R.STACK, a);
  });

  // ---- services --------------------------------------------------------------------------------
  r.get('/services', (ctx) => {
    ctx.body = collection(ctx, R.SERVICE, listOf(ctx, store, 'service'), R.FIELDS.service);
  });
  r.post('/services', async (ctx) => {
    const { stackId, ...input } = parseBody(ctx, S.ServiceCreate);
    send(ctx, R.SERVICE, await offload.run({ op: 'createService', stackId, input }), 201);
  });
  r.get('/services/:id', (ctx) => send(ctx, R.SERVICE, store.mustGet('service', pid(ctx))));
  r.put('/services/:id', async (ctx) => {
    const b = parseBody(ctx, S.ServiceUpdate);
    const patch = {
      ...(b.scale !== undefined ? { scale: b.scale } : {}),
      ...(b.metadata !== undefined ? { metadata: b.metadata } : {}),
      ...(b.name !== undefined ? { name: b.name } : {}),
      ...(b.lbConfig !== undefined ? { lbConfig: b.lbConfig } : {}),
    };
    send(ctx, R.SERVICE, await offload.run({ op: 'updateService', serviceId: pid(ctx), patch }));
  });
  r.delete('/services/:id', (ctx) => {
    removeService(store, pid(ctx));
    ctx.status = 204;
  });
  r.post('/services/:id', (ctx) => {
    const id = pid(ctx);
    const a = actionOf(ctx);
    switch (a) {
      case 'activate':
      case 'deactivate':
        return send(ctx, R.SERVICE, setServiceActive(store, id, a === 'activate'));
      case 'upgrade': {
        const b = parseBody(ctx, S.ServiceUpgrade).inServiceStrategy;
        const strategy = {
          ...(b.startFirst !== undefined ? { startFirst: b.startFirst } : {}),
          ...(b.batchSize !== undefined ? { batchSize: b.batchSize } : {}),
          ...(b.intervalMillis !== undefined ? { intervalMillis: b.intervalMillis } : {}),
        };
        upgrades.poke();
        return send(
          ctx,
          R.SERVICE,
          upgrade(store, id, {
            ...(b.launchConfig ? { launchConfig: b.launchConfig } : {}),
            ...(b.secondaryLaunchConfigs ? { secondaryLaunchConfigs: b.secondaryLaunchConfigs } : {}),
            strategy,
          }),
        );
      }
      case 'finishupgrade':
        return send(ctx, R.SERVICE, finishUpgradeService(store, id));
      case 'rollback':
        return send(ctx, R.SERVICE, rollback(store, id));
      case 'restart': {
        const b = parseBody(ctx, S.ServiceRestartInput).rollingRestartStrategy;
        const s = restartService(store, id, { ...(b.batchSize !== undefined ? { batchSize: b.batchSize } : {}), ...(b.intervalMillis !== undefined ? { intervalMillis: b.intervalMillis } : {}) });
        upgrades.poke();
        return send(ctx, R.SERVICE, s);
      }
      case 'setservicelinks': {
        const b = parseBody(ctx, S.ServiceLinksSet);
        setServiceLinks(store, id, b.serviceLinks);
        return send(ctx, R.SERVICE, store.mustGet('service', id));
      }
      default:
        unknownAction(R.SERVICE, a);
    }
  });

  r.get('/servicelinks', (ctx) => {
    ctx.body = collection(ctx, R.SERVICE_LINK, listOf(ctx, store, 'serviceLink'), R.FIELDS.serviceLink);
  });
  r.get('/servicelinks/:id', (ctx) => send(ctx, R.SERVICE_LINK, store.mustGet('serviceLink', pid(ctx))));

  // ---- containers ------------------------------------------------------------------------------
  r.get('/containers', (ctx) => {
    const envId = (ctx.query.environmentId as string | undefined) ?? (ctx.get('x-api-project-id') || undefined);
    ctx.body = collection(ctx, R.CONTAINER, containersWithStatus(store, listOf(ctx, store, 'container'), envId), R.FIELDS.container);
  });
  r.post('/containers', (ctx) => {
    const b = parseBody(ctx, S.ContainerCreate);
    const c = createContainer(store, {
      environmentId: envIdOf(ctx, store, b.environmentId),
      name: b.name,
      ...(b.hostId ? { hostId: b.hostId } : {}),
      launchConfig: b.launchConfig,
      ...(b.strictRequestedIp ? { strictRequestedIp: true } : {}),
    });
    send(ctx, R.CONTAINER, c, 201);
  });
  r.get('/containers/:id', (ctx) => send(ctx, R.CONTAINER, containerWithStatus(store, store.mustGet('container', pid(ctx)))));
  r.delete('/containers/:id', (ctx) => {
    removeContainer(store, pid(ctx));
    ctx.status = 204;
  });
  r.post('/containers/:id', (ctx) => {
    const a = actionOf(ctx);
    if (a === 'execute') {
      const b = parseBody(ctx, S.ContainerExecute);
      return hostAccess(ctx, execPath(store.mustGet('container', pid(ctx)).id, b.command, b.tty));
    }
    if (a === 'stats') return hostAccess(ctx, `/v1/containers/${encodeURIComponent(store.mustGet('container', pid(ctx)).id)}/stats`);
    if (a !== 'start' && a !== 'stop') unknownAction(R.CONTAINER, a);
    send(ctx, R.CONTAINER, containerWithStatus(store, setContainerDesired(store, pid(ctx), a === 'start' ? 'running' : 'stopped')));
  });

  r.get('/containerlinks', (ctx) => {
    ctx.body = collection(ctx, R.CONTAINER_LINK, listOf(ctx, store, 'containerLink'), R.FIELDS.containerLink);
  });
  r.post('/containerlinks', (ctx) => send(ctx, R.CONTAINER_LINK, createContainerLink(store, parseBody(ctx, S.ContainerLinkCreate)), 201));
  r.delete('/containerlinks/:id', (ctx) => {
    const l = store.mustGet('containerLink', pid(ctx));
    store.tx((tx) => tx.remove('containerLink', l.id));
    ctx.status = 204;
  });

  // ---- certificates ----------------------------------------------------------------------------
  r.get('/certificates', (ctx) => {
    ctx.body = collection(ctx, R.CERTIFICATE, listOf(ctx, store, 'certificate'), R.FIELDS.certificate);
  });
  r.post('/certificates', (ctx) => {
    const b = parseBody(ctx, S.CertificateCreate);
    send(ctx, R.CERTIFICATE, createCertificate(store, { ...b, environmentId: envIdOf(ctx, store, b.environmentId) }), 201);
  });
  r.get('/certificates/:id', (ctx) => send(ctx, R.CERTIFICATE, store.mustGet('certificate', pid(ctx))));
  r.put('/certificates/:id', (ctx) => send(ctx, R.CERTIFICATE, updateCertificate(store, pid(ctx), parseBody(ctx, S.CertificateUpdate))));
  r.delete('/certificates/:id', (ctx) => {
    removeCertificate(store, pid(ctx));
    ctx.status = 204;
  });

  // ---- registration and agents -----------------------------------------------------------------
  r.get('/scripts/:token', (ctx) => {
    verifyRegistrationToken(store, param(ctx, "token"));
    ctx.type = 'text/x-shellscript';
    ctx.body =
      `#!/bin/sh\n# drover agent registration\nexport DROVER_SERVER_URL='${deps.advertiseUrl()}'\n` +
      `export DROVER_REGISTRATION_TOKEN='${param(ctx, "token")}'\nexec drover agent\n`;
  });

  r.post('/agent/register', (ctx) => {
    const b = parseBody(ctx, S.AgentRegister);
    const { envId } = verifyRegistrationToken(store, b.token);
    // Re-registering an existing host (its uuid) must prove it is that host: its current agent key.
    const creds = parseBasicAuth(ctx.get('authorization'));
    const caller = creds ? authenticate(store, creds.accessKey, creds.secretKey) : undefined;
    const { token: _t, ...reg } = b;
    const { host, key } = registerAgent(store, envId, reg, caller);
    ctx.status = 201;
    ctx.body = {
      type: 'agentRegistration',
      host,
      environmentId: envId,
      accessKey: key.accessKey,
      secretKey: key.secretKey,
    };
  });

  r.get('/agent/self', (ctx) => {
    const p = agentPrincipal(ctx);
    ctx.body = resource(ctx, R.HOST, R.hostWithStatus(store, store.mustGet('host', p.hostId)));
  });

  r.get('/agent/watch', async (ctx) => {
    const p = agentPrincipal(ctx);
    // Best effort: while the worker writes, last-seen waits for the next call (never a blocking wait).
    if (!offload.busy) touchHost(store, p.hostId);
    await watch(ctx, deps, p.envId);
  });

  // Certificate mode of the managed network: the agent's CSR, signed by the environment's CA.
  r.post('/agent/certificate', (ctx) => {
    const p = agentPrincipal(ctx);
    const b = parseBody(ctx, S.AgentCertificateRequest);
    ctx.body = { type: 'hostCertificate', ...issueHostCertificate(store, store.mustGet('host', p.hostId), b.csr) };
  });

  r.post('/agent/report', (ctx) => {
    const p = agentPrincipal(ctx);
    const b = parseBody(ctx, S.AgentReport);
    const changed = applyContainerReports(store, p.hostId, b.containers, publisher);
    if (Object.keys(b.applied).length) {
      const row = store.db.prepare('SELECT applied FROM host_status WHERE host_id = ?').get(p.hostId) as { applied: string } | undefined;
      const applied = { ...(row ? (JSON.parse(row.applied) as Record<string, unknown>) : {}) };
      for (const [cap, st] of Object.entries(b.applied)) applied[cap] = { ...st, at: nowIso() };
      store.db
        .prepare('INSERT INTO host_status (host_id, last_seen, applied) VALUES (?, ?, ?) ON CONFLICT(host_id) DO UPDATE SET last_seen = excluded.last_seen, applied = excluded.applied')
        .run(p.hostId, nowIso(), JSON.stringify(applied));
    } else touchHost(store, p.hostId);
    if (b.network) store.db.prepare('UPDATE host_status SET network = ? WHERE host_id = ?').run(JSON.stringify(b.network), p.hostId);
    if (b.accessPort !== undefined) {
      store.db.prepare('INSERT INTO host_status (host_id, applied, access_port) VALUES (?, ?, ?) ON CONFLICT(host_id) DO UPDATE SET access_port = excluded.access_port').run(p.hostId, '{}', b.accessPort);
    }
    const found = b.found.length ? adoptFound(store, p.hostId, b.found) : [];
    ctx.body = { type: 'agentReport', containersChanged: changed, ...(found.length ? { found } : {}) };
  });

  // Adoption of a container started by hand on the agent's host (src/agent/runtime): 201 with the new
  // record, 200 with the existing one when that docker id was adopted before.
  r.post('/agent/adopt', (ctx) => {
    const p = agentPrincipal(ctx);
    const { container, created } = adoptContainer(store, p.hostId, parseBody(ctx, S.AgentAdopt));
    send(ctx, R.CONTAINER, containerWithStatus(store, container), created ? 201 : 200);
  });

  return r;
}

function agentPrincipal(ctx: ApiContext): Principal & { envId: string; hostId: string } {
  const p = principal(ctx);
  if (p.role !== 'agent' || !p.envId || !p.hostId) throw new ForbiddenError('this endpoint is for agents (use the credentials issued at registration)');
  return p as Principal & { envId: string; hostId: string };
}

function touchHost(store: Store, hostId: string): void {
  store.db
    .prepare('INSERT INTO host_status (host_id, last_seen) VALUES (?, ?) ON CONFLICT(host_id) DO UPDATE SET last_seen = excluded.last_seen')
    .run(hostId, nowIso());
}

async function watch(ctx: ApiContext, deps: RouteDeps, envId: string): Promise<void> {
  const after = ctx.query.after === undefined ? 0 : Number(ctx.query.after);
  if (!Number.isInteger(after) || after < 0) throw new ValidationError('InvalidFormat', 'after must be a revision number ≥ 0', 'after');
  const timeout = ctx.query.timeout === undefined ? 30 : Number(ctx.query.timeout);
  if (!Number.isFinite(timeout) || timeout < 0) throw new ValidationError('InvalidFormat', 'timeout must be seconds ≥ 0', 'timeout');
  deps.store.mustGet('environment', envId);
  const ac = new AbortController();
  ctx.res.on('close', () => ac.abort());
  await deps.hub.waitPast(envId, after, Math.min(timeout, deps.maxWatchSeconds) * 1000, ac.signal);
  ctx.type = 'application/json';
  ctx.body = deps.hub.responseJson(envId, after);
}

function param(ctx: { params?: Record<string, string | undefined> }, name: string): string {
  const v = ctx.params?.[name];
  if (v === undefined) throw new ValidationError('MissingParameter', `missing path parameter ${name}`);
  return v;
}

function pid(ctx: { params?: Record<string, string | undefined> }): string {
  return param(ctx, 'id');
}

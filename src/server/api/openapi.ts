// The OpenAPI document, generated from the same zod schemas that validate requests.
import { z } from 'zod';
import * as S from './schemas.js';
import * as M from '../../model/resources.js';
import { VERSION } from '../../common/version.js';

const json = (s: z.ZodType) => z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' });

export function openApiDocument(): Record<string, unknown> {
  const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
  const body = (name: string) => ({ required: true, content: { 'application/json': { schema: ref(name) } } });
  const ok = (name: string) => ({ description: 'OK', content: { 'application/json': { schema: ref(name) } } });
  const crud = (coll: string, res: string, create?: string) => ({
    [`/v1/${coll}`]: {
      get: { summary: `list ${coll} (filter with ?field=value)`, responses: { 200: { description: 'collection' } } },
      ...(create ? { post: { summary: `create a ${res}`, requestBody: body(create), responses: { 201: ok(res) } } } : {}),
    },
    [`/v1/${coll}/{id}`]: {
      parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
      get: { summary: `get a ${res}`, responses: { 200: ok(res), 404: { description: 'not found' } } },
      delete: { summary: `remove a ${res}`, responses: { 204: { description: 'removed' } } },
      post: {
        summary: `run an action on a ${res} (?action=name; see the resource's "actions")`,
        parameters: [{ name: 'action', in: 'query', required: true, schema: { type: 'string' } }],
        responses: { 200: ok(res) },
      },
    },
  });
  return {
    openapi: '3.1.0',
    info: { title: 'drover control plane', version: VERSION },
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'basic' } },
      schemas: {
        Environment: json(M.Environment),
        Host: json(M.Host),
        Stack: json(M.Stack),
        Service: json(M.Service),
        Container: json(M.Container),
        ServiceLink: json(M.ServiceLink),
        ContainerLink: json(M.ContainerLink),
        // As the API shows it: no key; `expired` and `expiresInDays` computed when read.
        Certificate: json(M.Certificate.omit({ key: true }).extend({ expired: z.boolean(), expiresInDays: z.number().int() })),
        EnvironmentCreate: json(S.EnvironmentCreate),
        StackCreate: json(S.StackCreate),
        ServiceCreate: json(S.ServiceCreate),
        ServiceUpgrade: json(S.ServiceUpgrade),
        ContainerCreate: json(S.ContainerCreate),
        ContainerLinkCreate: json(S.ContainerLinkCreate),
        CertificateCreate: json(S.CertificateCreate),
        CertificateUpdate: json(S.CertificateUpdate),
        AgentRegister: json(S.AgentRegister),
        AgentReport: json(S.AgentReport),
      },
    },
    security: [{ apiKey: [] }],
    paths: {
      '/v1/version': { get: { summary: 'server version (anonymous)', security: [], responses: { 200: { description: 'OK' } } } },
      ...crud('environments', 'Environment', 'EnvironmentCreate'),
      ...crud('hosts', 'Host'),
      ...crud('stacks', 'Stack', 'StackCreate'),
      ...crud('services', 'Service', 'ServiceCreate'),
      ...crud('containers', 'Container', 'ContainerCreate'),
      ...crud('servicelinks', 'ServiceLink'),
      ...crud('containerlinks', 'ContainerLink', 'ContainerLinkCreate'),
      ...crud('certificates', 'Certificate', 'CertificateCreate'),
      '/v1/certificates/{id}': {
        ...crud('certificates', 'Certificate')['/v1/certificates/{id}'],
        put: { summary: 'replace a Certificate (new PEMs, validated like a new one; balancers take them without a reload)', requestBody: body('CertificateUpdate'), responses: { 200: ok('Certificate') } },
      },
      '/v1/containers/{id}/logs': { get: { summary: "the container's logs from its host's agent (?follow=1, ?since=<unix s>, ?tail=<n>, ?timestamps=1), streamed as text", responses: { 200: { description: 'text/plain stream' } } } },
      '/v1/containers/{id}/exec': { get: { summary: 'websocket: a command in the container (?cmd=<JSON array>, ?tty=1); binary frames are terminal bytes, text frames {"resize":[cols,rows]} / {"eof":true} and {"exit":<code>}', responses: { 101: { description: 'websocket' } } } },
      '/v1/containers/{id}/stats': { get: { summary: 'websocket: JSON samples {at, cpuPercent, memory{usage,limit}, network{rxBytes,txBytes}} every second', responses: { 101: { description: 'websocket' } } } },
      '/v1/hosts/{id}/stats': { get: { summary: "websocket: the host's samples, in the containers' shape", responses: { 101: { description: 'websocket' } } } },
      '/v1/agent/register': { post: { summary: 'trade a registration token for agent credentials', security: [], requestBody: body('AgentRegister'), responses: { 201: { description: 'registered' } } } },
      '/v1/agent/watch': { get: { summary: 'changes after ?after=<revision> (long poll, ?timeout=<s>)', responses: { 200: { description: 'watch response' } } } },
      '/v1/agent/report': { post: { summary: 'container states and applied capabilities', requestBody: body('AgentReport'), responses: { 200: { description: 'OK' } } } },
    },
  };
}

// An Agent registered with a test control plane (startTestServer), as the agent tests build it, and the
// credentials it stored, for speaking to the control plane as that agent (reports).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, type AgentOptions } from '../../src/agent/agent.js';
import { silentLogger } from '../../src/common/log.js';
import { createRegistrationToken } from '../../src/server/auth/credentials.js';
import { defaultEnvironment } from '../../src/server/domain/environments.js';
import type { TestServer } from './server.js';

/** An agent of the default environment with a fresh registration token; `opts` override the defaults. */
export function testAgent(t: TestServer, dataDir: string, opts: Partial<AgentOptions> = {}): Agent {
  return new Agent({
    dataDir,
    serverUrl: t.url,
    registrationToken: createRegistrationToken(t.srv.store, defaultEnvironment(t.srv.store).id).token,
    hostname: 'node1',
    agentIp: '192.0.2.41',
    log: silentLogger(),
    watchTimeoutSec: 5,
    ...opts,
  });
}

/** The API key the agent in `dataDir` registered with (its agent.json). */
export function agentCreds(dataDir: string): { accessKey: string; secretKey: string } {
  return JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')) as { accessKey: string; secretKey: string };
}

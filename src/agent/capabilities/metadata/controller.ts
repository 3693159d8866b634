// Capability: the rancher-metadata service on 169.254.169.250:80, answering from the synced state.
// Render = the answers trees for this host (pure); apply = start the server once, swap the answers.
import type { Registry } from 'prom-client';
import type { Logger } from '../../../common/log.js';
import { MetadataServer } from '../../../metadata/server.js';
import { fullDelta } from '../../../model/state.js';
import { renderMetadata } from './render.js';
import type { Answers } from '../../../metadata/answers.js';
import type { Capability } from '../capability.js';
import { listenWithAddress, splitHostPort } from '../listen-address.js';

export interface MetadataCapabilityOptions {
  log: Logger;
  registry?: Registry;
  /** HOST:PORT, default 169.254.169.250:80. */
  listen: string;
}

export function metadataCapability(opts: MetadataCapabilityOptions): Capability<Answers> & { server: MetadataServer } {
  const log = opts.log.child({ component: 'metadata' });
  const server = new MetadataServer({ log, ...(opts.registry ? { registry: opts.registry } : {}) });
  const { host, port } = splitHostPort(opts.listen);
  let listening = false;
  let keyMissing = false;
  let warnedNoKey = false;
  return {
    name: 'metadata',
    server,
    // Service tokens are keyed with the control plane's key; without one yet (an agent upgraded from a
    // version that had none, before the server first answers) they are null rather than guessable.
    render: (state, h) => {
      keyMissing = h.metadataTokenKey === undefined;
      return renderMetadata(undefined, state, fullDelta(state.revision), h);
    },
    // The answers carry the state's revision in `version`: a new state is always a new answer set.
    same: () => false,
    applier: {
      async apply(answers) {
        if (keyMissing && !warnedNoKey) {
          warnedNoKey = true;
          log.warn('no metadata token key from the control plane yet: self/service/token is null until it sends one');
        }
        server.setAnswers(answers);
        if (!listening) {
          await listenWithAddress(host, () => server.listen(host, port), log);
          listening = true;
          log.info({ address: opts.listen }, 'metadata listening');
        }
      },
      async close() {
        await server.close();
      },
    },
  };
}

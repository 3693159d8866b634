// Controller: the rancher-metadata service on 169.254.169.250:80, answering from the synced state.
// start = bind the listener (a port in use is retried by the manager with backoff); reconcile = render
// (render.ts) and swap the answers in (long polls wake up); stop = close.
import type { Registry } from 'prom-client';
import type { Logger } from '../../../common/log.js';
import { MetadataServer } from '../../../metadata/server.js';
import type { Answers } from '../../../metadata/answers.js';
import type { Controller } from '../../controller/controller.js';
import { listenWithAddress, splitHostPort } from '../listen-address.js';
import { renderMetadata } from './render.js';

export interface MetadataControllerOptions {
  log: Logger;
  registry?: Registry | undefined;
  /** HOST:PORT, default 169.254.169.250:80. */
  listen: string;
}

export type MetadataController = Controller & { readonly server: MetadataServer };

export function metadataController(opts: MetadataControllerOptions): MetadataController {
  const log = opts.log.child({ component: 'metadata' });
  const server = new MetadataServer({ log, ...(opts.registry ? { registry: opts.registry } : {}) });
  splitHostPort(opts.listen); // a bad address is a configuration error here, not a start to retry
  let previous: Answers | undefined;
  let warnedNoKey = false;
  return {
    name: 'metadata',
    server,
    async start() {
      await listenWithAddress(opts.listen, log, (host, port) => server.listen(host, port));
    },
    reconcile(state, delta, h) {
      // Service tokens are keyed with the control plane's key; without one yet (an agent upgraded from a
      // version that had none, before the server first answers) they are null rather than guessable.
      if (h.metadataTokenKey === undefined && !warnedNoKey) {
        warnedNoKey = true;
        log.warn('no metadata token key from the control plane yet: self/service/token is null until it sends one');
      }
      const answers = renderMetadata(previous, state, delta, h);
      server.setAnswers(answers);
      previous = answers;
      return Promise.resolve();
    },
    // The answers live in this process and the listener is bound once (start); nothing to drift. (Without
    // a verify the resync would be a full render of every answer tree.)
    verify() {
      return Promise.resolve(undefined);
    },
    async stop() {
      await server.close();
    },
  };
}

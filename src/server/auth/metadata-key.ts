// The key of the metadata service tokens (`self/service/token`). Tokens are HMACs of the service uuid under
// this key, so they can only be computed by whoever holds it: the control plane and its registered agents
// (it reaches them in every agent watch response, never through the metadata tree or the admin API).
//
// One random server secret (kept in the settings table) and, per environment, a key derived from it and the
// environment uuid: stable across server and agent restarts and the same on every host of the environment;
// an agent of one environment cannot compute another environment's tokens.
import { createHmac, randomBytes } from 'node:crypto';
import type { Store } from '../db/store.js';

const SETTING = 'metadata.tokenSecret';

function serverSecret(store: Store): Buffer {
  let k = store.getSetting(SETTING);
  if (!k) {
    k = randomBytes(32).toString('hex');
    store.setSetting(SETTING, k);
  }
  return Buffer.from(k, 'hex');
}

/** The metadata token key of an environment (64 hex characters). */
export function metadataTokenKey(store: Store, environmentUuid: string): string {
  return createHmac('sha256', serverSecret(store)).update(`drover-metadata-token-key:${environmentUuid}`).digest('hex');
}

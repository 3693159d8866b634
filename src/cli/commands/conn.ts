// The connection flags every API command takes, and the client they make.
import type { Command } from 'commander';
import { ApiClient, resolveCredentials } from '../api-client.js';
import { loadConfig } from '../../config/config.js';

export interface ConnFlags {
  url?: string;
  accessKey?: string;
  secretKey?: string;
  data?: string;
}

export function client(o: ConnFlags): ApiClient {
  const cfg = loadConfig();
  return new ApiClient(resolveCredentials(o, o.data ?? cfg.dataDir));
}

export function withConn(cmd: Command): Command {
  return cmd
    .option('--url <url>', 'control plane URL (env DROVER_URL; default from <data>/cli.json or http://127.0.0.1:8080)')
    .option('--access-key <key>', 'API access key (env DROVER_ACCESS_KEY)')
    .option('--secret-key <secret>', 'API secret key (env DROVER_SECRET_KEY)')
    .option('--data <dir>', 'data directory of `drover up`, to read its cli.json (default: .drover)');
}

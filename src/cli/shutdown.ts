// Graceful shutdown on SIGTERM/SIGINT: run the closers once, exit 0; a second signal exits at once.
// A child of `drover up` also stops when its supervisor is gone (the IPC channel closes), so that a
// supervisor killed with -9 leaves no orphans behind.
import type { Logger } from '../common/log.js';

export function onShutdown(log: Logger, ...closers: (() => Promise<void>)[]): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      if (signal !== 'supervisor gone') process.exit(1);
      return;
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    void (async () => {
      for (const c of closers) {
        try {
          await c();
        } catch (err) {
          log.error({ err }, 'error while shutting down');
        }
      }
      log.flush?.();
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (process.connected) process.once('disconnect', () => stop('supervisor gone'));
}

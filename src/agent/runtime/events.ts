// Follows Docker's container events and survives the stream breaking (dockerd restarts, socket hiccups).
//
// On every (re)connection the stream is opened with `since` = the second of the last event seen, so the
// daemon replays what happened while we were away; events at or before the last one already handled are
// dropped (exact nanosecond time + id + action), so nothing is delivered twice. `onConnected` then lets
// the caller resync from a full container list, which covers what a restarted daemon no longer
// remembers (its event log is in memory).
import type Dockerode from 'dockerode';
import type { Logger } from '../../common/log.js';
import { errorMessage } from '../../common/errors.js';
import { Backoff, type BackoffPolicy } from '../sync/backoff.js';
import { parseEventLine, type DockerEvent } from './docker-api.js';
import { lineSplitter } from './lines.js';

/** The container actions the runtime acts on. */
export const WATCHED_ACTIONS = ['create', 'start', 'restart', 'die', 'stop', 'kill', 'oom', 'destroy', 'pause', 'unpause', 'rename', 'update'];

export interface EventWatcherOptions {
  docker: Dockerode;
  log: Logger;
  onEvent(ev: DockerEvent): void;
  /** After each successful (re)connection; `reconnect` is false the first time. */
  onConnected(info: { reconnect: boolean }): void;
  /** When the stream ends or cannot be opened (dockerd stopping or away). */
  onDisconnected?(): void;
  backoff?: BackoffPolicy;
}

export class DockerEventWatcher {
  private readonly abort = new AbortController();
  private lastNano: bigint | undefined;
  private readonly seenAtLast = new Set<string>();
  /** Seconds (daemon clock) from which to replay when no event was seen yet. */
  private openedAt: number | undefined;
  private loop: Promise<void> | undefined;
  private current: NodeJS.ReadableStream | undefined;
  private connectedOnce = false;
  /** Events delivered (for tests and debugging). */
  delivered = 0;

  constructor(private readonly opts: EventWatcherOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  async close(): Promise<void> {
    this.abort.abort();
    destroyStream(this.current);
    await this.loop;
  }

  private sinceSeconds(): number | undefined {
    if (this.lastNano !== undefined) return Number(this.lastNano / 1_000_000_000n);
    return this.openedAt;
  }

  private async run(): Promise<void> {
    const backoff = new Backoff(this.opts.backoff ?? { initialMs: 200, maxMs: 5_000 });
    const { log } = this.opts;
    let failing = false;
    while (!this.abort.signal.aborted) {
      try {
        const since = this.sinceSeconds();
        const openedAt = Math.floor(Date.now() / 1000) - 1;
        const stream = await this.opts.docker.getEvents({
          ...(since !== undefined ? { since } : {}),
          filters: { type: ['container'], event: WATCHED_ACTIONS },
        });
        this.current = stream;
        this.openedAt ??= openedAt;
        if (failing) log.info({ since }, 'docker event stream back; resyncing');
        failing = false;
        backoff.reset();
        const reconnect = this.connectedOnce;
        this.connectedOnce = true;
        this.opts.onConnected({ reconnect });
        await this.consume(stream);
        if (!this.abort.signal.aborted) log.warn('docker event stream ended; reconnecting');
        this.opts.onDisconnected?.();
      } catch (err) {
        if (this.abort.signal.aborted) break;
        this.opts.onDisconnected?.();
        if (!failing) log.warn({ err: errorMessage(err) }, 'docker event stream unavailable; retrying');
        failing = true;
      }
      this.current = undefined;
      if (!this.abort.signal.aborted) await backoff.wait(this.abort.signal);
    }
  }

  private consume(stream: NodeJS.ReadableStream): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        stream.removeListener('data', onData);
        resolve();
      };
      const onData = lineSplitter((line) => this.handleLine(line));
      stream.on('data', onData);
      stream.once('end', done);
      stream.once('close', done);
      stream.once('error', done);
      if (this.abort.signal.aborted) done();
    });
  }

  private handleLine(line: string): void {
    const ev = parseEventLine(line);
    if (!ev) {
      this.opts.log.debug({ line: line.slice(0, 200) }, 'ignoring an unreadable docker event');
      return;
    }
    const key = `${ev.Actor.ID}|${ev.Action}`;
    if (this.lastNano !== undefined) {
      if (ev.timeNano < this.lastNano) return; // replayed: handled before the stream broke
      if (ev.timeNano === this.lastNano && this.seenAtLast.has(key)) return;
    }
    if (this.lastNano === undefined || ev.timeNano > this.lastNano) {
      this.lastNano = ev.timeNano;
      this.seenAtLast.clear();
    }
    this.seenAtLast.add(key);
    this.delivered++;
    try {
      this.opts.onEvent(ev);
    } catch (err) {
      this.opts.log.error({ err: errorMessage(err) }, 'docker event handler failed');
    }
  }
}

function destroyStream(s: NodeJS.ReadableStream | undefined): void {
  if (s && 'destroy' in s && typeof s.destroy === 'function') (s.destroy as () => void)();
}

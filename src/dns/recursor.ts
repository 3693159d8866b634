// Recursion: the cache, in-flight de-duplication and the choice among a client's upstreams.
//
// Upstreams are asked in order (the client's own list, then the host's resolvers). The next one is
// asked as soon as the current one fails (error, timeout, SERVFAIL/REFUSED/NOTIMP/FORMERR) or when it
// has been silent for `hedgeMs`; the first usable reply (NOERROR or NXDOMAIN) wins and the others are
// ignored. Each attempt has its own timeout (default 2 s). When all fail: SERVFAIL, and nothing is
// cached.
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { AnswerCache, answerFromResponse, withRcode, type CachedAnswer } from './cache.js';
import type { Upstream } from './data.js';
import type { DnsMetrics } from './metrics.js';
import { UpstreamClient, type Exchange } from './upstream.js';
import { CLASS_IN, encodeQuestion, RCODE, TYPE } from './wire.js';

/** fresh: the answer was received for this resolution (not taken from the cache). */
export type RecursionResult =
  | { readonly ok: true; readonly answer: CachedAnswer; readonly fresh: boolean }
  | { readonly ok: false; readonly reason: string };

export interface RecursorOptions {
  client: UpstreamClient;
  cache: AnswerCache;
  /** Upper bound of a cached answer's lifetime (s). */
  maxTtl: number;
  /** Silence after which the next upstream is asked too (ms); 0 asks all at once. */
  hedgeMs: number;
  metrics: DnsMetrics;
  log: Logger;
  now: () => number;
}

type RaceResult = { ok: true; ex: Exchange } | { ok: false; reason: string };

function usable(rcode: number): boolean {
  return rcode === RCODE.NOERROR || rcode === RCODE.NXDOMAIN;
}

export class Recursor {
  private readonly inflight = new Map<string, Promise<RecursionResult>>();

  constructor(private readonly opts: RecursorOptions) {}

  /** The in-flight key (misses only: hits never build a string). */
  static key(listId: number, qtype: number, qname: string): string {
    return `${listId}:${qtype}:${qname}`;
  }

  /** A live cached answer (counted as a hit), or undefined (counted as a miss). */
  cached(listId: number, qtype: number, qname: string): CachedAnswer | undefined {
    const a = this.opts.cache.get(listId, qtype, qname, this.opts.now());
    if (a) this.opts.metrics.cacheHit();
    else this.opts.metrics.cacheMiss();
    return a;
  }

  /**
   * Resolves (qname, qtype) through upstreams. question is the wire question to send (the client's,
   * to keep its letter case); cacheable is false for names that must not share cache entries.
   */
  resolve(listId: number, qname: string, qtype: number, question: Buffer | undefined, upstreams: readonly Upstream[], cacheable: boolean): Promise<RecursionResult> {
    if (!cacheable) return this.fetch(listId, qname, qtype, question, upstreams, false);
    const hit = this.opts.cache.get(listId, qtype, qname, this.opts.now());
    const key = Recursor.key(listId, qtype, qname);
    if (hit) return Promise.resolve({ ok: true, answer: hit, fresh: false });
    let p = this.inflight.get(key);
    if (!p) {
      p = this.fetch(listId, qname, qtype, question, upstreams, true).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async fetch(listId: number, qname: string, qtype: number, question: Buffer | undefined, upstreams: readonly Upstream[], cacheable: boolean): Promise<RecursionResult> {
    if (upstreams.length === 0) return { ok: false, reason: 'no upstream resolvers' };
    let q: Buffer;
    try {
      q = question ?? encodeQuestion(qname, qtype);
    } catch (err) {
      return { ok: false, reason: errorMessage(err) };
    }
    const r = await this.race(upstreams, q, qname, qtype);
    if (!r.ok) return r;
    let answer = answerFromResponse(r.ex.buf, r.ex.parsed, this.opts.now(), this.opts.maxTtl);
    if (qtype === TYPE.AAAA && answer.rcode === RCODE.NXDOMAIN) {
      // Some upstreams answer AAAA with NXDOMAIN for names that have A records; musl and nginx take
      // that as "no such name". If the name has A records, this is NODATA.
      const a = await this.resolve(listId, qname, TYPE.A, undefined, upstreams, cacheable);
      if (a.ok && a.answer.rcode === RCODE.NOERROR && a.answer.aCount > 0) answer = withRcode(answer, RCODE.NOERROR);
    }
    if (cacheable) this.opts.cache.set(listId, qtype, qname, answer);
    return { ok: true, answer, fresh: true };
  }

  private race(upstreams: readonly Upstream[], question: Buffer, qname: string, qtype: number): Promise<RaceResult> {
    const { client, hedgeMs, log } = this.opts;
    return new Promise<RaceResult>((resolve) => {
      let next = 0;
      let running = 0;
      let done = false;
      let hedge: NodeJS.Timeout | undefined;
      const reasons: string[] = [];
      const fail = (up: Upstream, why: string): void => {
        running--;
        reasons.push(`${up.key}: ${why}`);
        if (done) return;
        if (next < upstreams.length) launch();
        else if (running === 0) {
          done = true;
          if (hedge) clearTimeout(hedge);
          resolve({ ok: false, reason: reasons.join('; ') });
        }
      };
      const launch = (): void => {
        if (done || next >= upstreams.length) return;
        const up = upstreams[next++]!;
        running++;
        if (hedge) clearTimeout(hedge);
        hedge = next < upstreams.length ? setTimeout(launch, hedgeMs) : undefined;
        client.exchange(up, question, qname, qtype, CLASS_IN).then(
          (ex) => {
            if (!usable(ex.parsed.rcode)) {
              fail(up, `rcode ${ex.parsed.rcode}`);
              return;
            }
            running--;
            if (done) return;
            done = true;
            if (hedge) clearTimeout(hedge);
            resolve({ ok: true, ex });
          },
          (err: unknown) => fail(up, errorMessage(err)),
        );
      };
      launch();
    }).then((r) => {
      if (!r.ok) log.debug({ qname, qtype, reason: r.reason }, 'recursion failed');
      return r;
    });
  }
}

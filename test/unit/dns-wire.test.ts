// The DNS codec: query parsing, reply building (compression, shuffling, truncation, OPT), upstream
// reply parsing and the cache's TTL patching. dns2's independent decoder checks what we encode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dns2 from 'dns2';
import { answerFromResponse, AnswerCache, replyFromAnswer, withRcode } from '../../src/dns/cache.js';
import { aRecords } from '../../src/dns/data.js';
import {
  buildQuery,
  decodeRecords,
  encodeName,
  encodeQuestion,
  ipv4ToInt,
  parseQuery,
  parseResponse,
  QNAME_PTR,
  RCODE,
  ReplyBuilder,
  reverseName,
  TYPE,
  type Query,
} from '../../src/dns/wire.js';

const { Packet } = dns2;

function query(name: string, qtype: number = TYPE.A, udp = 0, id = 0x1234): Buffer {
  return buildQuery(id, encodeQuestion(name, qtype), udp);
}

function q(buf: Buffer): Query {
  const r = parseQuery(buf);
  assert.ok(r && r.kind === 'query');
  return r;
}

test('parseQuery: name lower-cased, type, class, EDNS size and version', () => {
  const p = q(query('Db.App.Rancher.Internal', TYPE.AAAA, 1232));
  assert.equal(p.qname, 'db.app.rancher.internal');
  assert.equal(p.labels, 4);
  assert.equal(p.qtype, TYPE.AAAA);
  assert.equal(p.qclass, 1);
  assert.equal(p.id, 0x1234);
  assert.deepEqual(p.edns, { udpSize: 1232, version: 0 });
  assert.equal(p.exotic, false);
  assert.equal(q(query('x')).edns, null);
  assert.equal(q(query('')).qname, '');
});

test('parseQuery: responses and short messages are dropped; no or broken question is FORMERR', () => {
  const resp = query('a');
  resp.writeUInt16BE(0x8000, 2);
  assert.equal(parseQuery(resp), null);
  assert.equal(parseQuery(Buffer.alloc(5)), null);
  const none = Buffer.alloc(12);
  assert.equal(parseQuery(none)?.kind, 'formerr');
  const cut = query('abc.example').subarray(0, 16);
  assert.equal(parseQuery(cut)?.kind, 'formerr');
  const ptr = Buffer.concat([Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
  assert.equal(parseQuery(ptr)?.kind, 'formerr');
});

test('parseQuery: a label with a dot or a control byte makes the name exotic', () => {
  const odd = Buffer.concat([Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([3, 0x61, 0x2e, 0x62, 0, 0, 1, 0, 1])]);
  const p = q(odd);
  assert.equal(p.exotic, true);
});

test('A reply: owner is a pointer to the question, all records present, shuffled across replies', () => {
  const ips = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4'];
  const a = aRecords(ips, 7);
  const b = new ReplyBuilder();
  const qq = q(query('Svc.Stack.rancher.internal', TYPE.A, 0));
  const orders = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const out = b.begin(qq, RCODE.NOERROR).aRecords(a.tails, QNAME_PTR, true).finish(512, null);
    const p = Packet.parse(out);
    assert.equal(p.header.qr, 1);
    assert.equal(p.header.aa, 1);
    assert.equal(p.header.ra, 1);
    assert.equal(p.header.rd, 1);
    assert.equal(p.questions[0]?.name, 'Svc.Stack.rancher.internal'); // case echoed
    assert.deepEqual(p.answers.map((x) => x.address).sort(), ips);
    for (const x of p.answers) {
      assert.equal(x.name, 'Svc.Stack.rancher.internal');
      assert.equal(x.ttl, 7);
    }
    // each record: 2-byte pointer + 14 bytes
    assert.equal(out.length, 12 + (qq.questionEnd - 12) + 4 * 16);
    assert.equal(out.readUInt16BE(12 + (qq.questionEnd - 12)), 0xc00c);
    orders.add(p.answers.map((x) => x.address).join(','));
  }
  assert.ok(orders.size > 1, 'shuffled');
});

test('compression: a CNAME target sharing the question suffix points into it; SOA owner points at the zone', () => {
  const b = new ReplyBuilder();
  const qq = q(query('ext.app.rancher.internal', TYPE.A));
  b.begin(qq, RCODE.NXDOMAIN);
  const at = b.nameRecord(QNAME_PTR, TYPE.CNAME, 5, 'other.app.rancher.internal');
  assert.ok(at > 0);
  b.authority().soaRecord('rancher.internal', 2, 1, { serial: 9, refresh: 1, retry: 2, expire: 3, minimum: 4 });
  const out = b.finish(512, null);
  const p = Packet.parse(out);
  assert.equal(p.header.rcode, RCODE.NXDOMAIN);
  assert.equal(p.answers[0]?.domain, 'other.app.rancher.internal');
  const soa = p.authorities[0];
  assert.equal(soa?.name, 'rancher.internal');
  assert.equal(soa?.primary, 'rancher.internal');
  assert.equal(soa?.admin, 'hostmaster.rancher.internal');
  assert.equal(soa?.serial, 9);
  assert.equal(soa?.minimum, 4);
  // "other" + pointer to "app.rancher.internal" in the question: 1+5+2 bytes of rdata
  assert.equal(out.readUInt16BE(at - 2), 8);
  const uncompressed = encodeName('other.app.rancher.internal').length;
  assert.ok(8 < uncompressed);
});

test('size limits: additional dropped first, then TC with the question only; OPT kept; TCP gets everything', () => {
  const b = new ReplyBuilder();
  const qq = q(query('s.rancher.internal', TYPE.SRV, 1232));
  const build = (limit: number, n: number): Buffer => {
    b.begin(qq, RCODE.NOERROR);
    for (let i = 0; i < n; i++) b.srvRecord(QNAME_PTR, 1, 0, 0, 80, `c${i}.rancher.internal`);
    b.additional();
    for (let i = 0; i < n; i++) b.aRecordsNamed(aRecords([`10.0.0.${i + 1}`], 1).tails, `c${i}.rancher.internal`);
    return b.finish(limit, qq.edns);
  };
  const full = Packet.parse(build(1232, 10));
  assert.equal(full.answers.length, 10);
  assert.equal(full.additionals.filter((x) => x.type === TYPE.A).length, 10);
  assert.equal(full.additionals.filter((x) => x.type === TYPE.OPT).length, 1);
  assert.equal(full.additionals.find((x) => x.type === TYPE.A)?.name, 'c0.rancher.internal');

  const noAdd = build(512, 10);
  assert.ok(noAdd.length <= 512);
  const p2 = Packet.parse(noAdd);
  assert.equal(p2.header.tc, 0);
  assert.equal(p2.answers.length, 10);
  assert.deepEqual(p2.additionals.map((x) => x.type), [TYPE.OPT]);

  const tc = build(512, 40);
  const p3 = Packet.parse(tc);
  assert.equal(p3.header.tc, 1);
  assert.equal(p3.answers.length, 0);
  assert.equal(p3.questions.length, 1);
  assert.deepEqual(p3.additionals.map((x) => x.type), [TYPE.OPT]);

  const tcp = Packet.parse(build(65535, 40));
  assert.equal(tcp.answers.length, 40);
  assert.equal(tcp.header.tc, 0);
});

test('BADVERS goes in the OPT extended rcode', () => {
  const b = new ReplyBuilder();
  const qq = q(query('x', TYPE.A, 1232));
  const out = b.begin(qq, RCODE.BADVERS).finish(512, qq.edns);
  assert.equal(out[3]! & 0xf, 0);
  const opt = out.subarray(out.length - 11);
  assert.equal(opt.readUInt16BE(1), TYPE.OPT);
  assert.equal(opt[5], 1);
});

/** An upstream-style reply built with dns2 (independent encoder, with compression). */
function upstreamReply(name: string, qtype: number, answers: { type: number; ttl: number; data: string }[], opts: { rcode?: number; soa?: boolean; opt?: boolean; aa?: boolean; flags?: number } = {}): Buffer {
  const p = new Packet();
  p.header.id = 0x4321;
  p.header.qr = 1;
  p.header.aa = opts.aa ? 1 : 0;
  p.header.rcode = opts.rcode ?? 0;
  p.questions.push(new Packet.Question(name, qtype, 1));
  for (const a of answers) {
    const base = { name, type: a.type, class: 1, ttl: a.ttl };
    p.answers.push(new Packet.Resource(a.type === TYPE.CNAME ? { ...base, domain: a.data } : { ...base, address: a.data }));
  }
  if (opts.soa) {
    p.authorities.push(
      new Packet.Resource({ name: 'example.test', type: TYPE.SOA, class: 1, ttl: 60, primary: 'ns.example.test', admin: 'h.example.test', serial: 1, refresh: 1, retry: 1, expiration: 1, minimum: 30 }),
    );
  }
  if (opts.opt) p.additionals.push(Packet.Resource.EDNS([]));
  return p.toBuffer();
}

test('upstream replies: parsed, OPT stripped, TTL patched and counting down, question case from the client', () => {
  const buf = upstreamReply('www.example.test', TYPE.A, [
    { type: TYPE.A, ttl: 100, data: '192.0.2.1' },
    { type: TYPE.A, ttl: 50, data: '192.0.2.2' },
  ], { opt: true });
  const p = parseResponse(buf);
  assert.equal(p.an, 2);
  assert.equal(p.ar, 0);
  assert.equal(p.minAnswerTtl, 50);
  assert.equal(p.aCount, 2);
  const a = answerFromResponse(buf, p, 1000, 300);
  assert.equal(a.ttl, 50);
  const capped = answerFromResponse(buf, p, 1000, 20);
  assert.equal(capped.ttl, 20);

  const client = q(query('WWW.example.TEST', TYPE.A, 4096, 77));
  const r1 = Packet.parse(replyFromAnswer(client, a, 1000, 4096, true));
  assert.equal(r1.header.id, 77);
  assert.equal(r1.questions[0]?.name, 'WWW.example.TEST');
  assert.deepEqual(r1.answers.map((x) => x.ttl), [50, 50]); // capped by the entry lifetime
  assert.deepEqual(r1.additionals.map((x) => x.type), [TYPE.OPT]);
  const r2 = Packet.parse(replyFromAnswer(client, a, 1000 + 12_500, 4096, false));
  assert.deepEqual(r2.answers.map((x) => x.ttl), [38, 38]);
  assert.equal(r2.answers[0]?.name, 'WWW.example.TEST');
  const noEdns = Packet.parse(replyFromAnswer(q(query('www.example.test')), a, 1000, 512, false));
  assert.equal(noEdns.additionals.length, 0);
});

test('forwarded reply flags: AA only as the upstream set it and only when just received; AD never; RD and CD from the query; RA=1', () => {
  for (const upstreamAa of [true, false]) {
    const raw = upstreamReply('www.example.test', TYPE.A, [{ type: TYPE.A, ttl: 100, data: '192.0.2.1' }], { aa: upstreamAa });
    // The upstream also set AD (0x0020) and cleared RA: neither is passed on.
    raw.writeUInt16BE((raw.readUInt16BE(2) | 0x0020) & ~0x0080, 2);
    const a = answerFromResponse(raw, parseResponse(raw), 1000, 300);
    const qb = query('www.example.test', TYPE.A, 0, 9);
    qb.writeUInt16BE(0x0010, 2); // RD=0, CD=1
    const fresh = replyFromAnswer(q(qb), a, 1000, 512, true).readUInt16BE(2);
    const cached = replyFromAnswer(q(qb), a, 2000, 512, false).readUInt16BE(2);
    assert.equal(Boolean(fresh & 0x0400), upstreamAa, 'AA of a just-received answer is the upstream\'s');
    assert.equal(cached & 0x0400, 0, 'AA is clear on an answer from the cache');
    for (const f of [fresh, cached]) {
      assert.equal(f & 0x8000, 0x8000); // QR
      assert.equal(f & 0x0100, 0); // RD as in the query
      assert.equal(f & 0x0080, 0x0080); // RA
      assert.equal(f & 0x0020, 0); // AD
      assert.equal(f & 0x0010, 0x0010); // CD as in the query
    }
  }
});

test('local replies keep AA=1; errors and FORMERR carry no AA; RD and CD copied', () => {
  const b = new ReplyBuilder();
  const qb = query('x.rancher.internal', TYPE.A, 0, 5);
  qb.writeUInt16BE(0x0110, 2); // RD=1, CD=1
  const local = b.begin(q(qb), RCODE.NXDOMAIN).finish(512, null).readUInt16BE(2);
  assert.equal(local & 0x0400, 0x0400);
  assert.equal(local & 0x0110, 0x0110);
  const err = b.begin(q(qb), RCODE.SERVFAIL).nonAuthoritative().finish(512, null).readUInt16BE(2);
  assert.equal(err & 0x0400, 0);
  assert.equal(err & 0x0110, 0x0110);
  assert.equal(b.beginBare(5, 0x0100, RCODE.FORMERR).finish(512, null).readUInt16BE(2) & 0x0400, 0);
});

test('negative upstream answers: cached for the SOA minimum, only with an SOA; SERVFAIL never', () => {
  const nx = upstreamReply('nope.example.test', TYPE.A, [], { rcode: RCODE.NXDOMAIN, soa: true });
  const a = answerFromResponse(nx, parseResponse(nx), 0, 300);
  assert.equal(a.rcode, RCODE.NXDOMAIN);
  assert.equal(a.ttl, 30);
  const bare = upstreamReply('nope.example.test', TYPE.A, [], { rcode: RCODE.NXDOMAIN });
  assert.equal(answerFromResponse(bare, parseResponse(bare), 0, 300).ttl, 0);
  const sf = upstreamReply('x.example.test', TYPE.A, [], { rcode: RCODE.SERVFAIL, soa: true });
  assert.equal(answerFromResponse(sf, parseResponse(sf), 0, 300).ttl, 0);
  assert.equal(withRcode(a, RCODE.NOERROR).rcode, RCODE.NOERROR);
});

test('decodeRecords expands compressed names', () => {
  const buf = upstreamReply('alias.example.test', TYPE.A, [
    { type: TYPE.CNAME, ttl: 10, data: 'real.example.test' },
    { type: TYPE.A, ttl: 10, data: '192.0.2.9' },
  ]);
  const p = parseResponse(buf);
  const rrs = decodeRecords(buf, p.questionEnd, p.an);
  assert.equal(rrs[0]?.type, TYPE.CNAME);
  assert.deepEqual(rrs[0]?.rdata, encodeName('real.example.test'));
  assert.deepEqual([...rrs[1]!.rdata], [192, 0, 2, 9]);
});

test('parseResponse rejects broken messages', () => {
  assert.throws(() => parseResponse(Buffer.alloc(4)));
  assert.throws(() => parseResponse(query('x'))); // not a response
  const buf = upstreamReply('www.example.test', TYPE.A, [{ type: TYPE.A, ttl: 1, data: '192.0.2.1' }]);
  assert.throws(() => parseResponse(buf.subarray(0, buf.length - 2)));
  const loop = Buffer.from(buf);
  // make the answer owner a pointer to itself
  const at = parseResponse(buf).questionEnd;
  loop.writeUInt16BE(0xc000 | at, at);
  assert.throws(() => decodeRecords(loop, at, 1));
});

test('the LRU cache is bounded and expires entries', () => {
  const buf = upstreamReply('a.test', TYPE.A, [{ type: TYPE.A, ttl: 10, data: '192.0.2.1' }]);
  const entry = answerFromResponse(buf, parseResponse(buf), 0, 300);
  const c = new AnswerCache(3);
  for (const k of ['a', 'b', 'c']) c.set(0, 1, k, { ...entry });
  assert.ok(c.get(0, 1, 'a', 1)); // refreshes a
  c.set(0, 1, 'd', { ...entry });
  assert.equal(c.size, 3);
  assert.equal(c.get(0, 1, 'b', 1), undefined); // the least recently used went
  assert.ok(c.get(0, 1, 'a', 1));
  assert.equal(c.get(1, 1, 'a', 1), undefined); // another upstream list
  assert.equal(c.get(0, 28, 'a', 1), undefined); // another type
  c.set(0, 1, 'a', { ...entry }); // replacing does not grow it
  assert.equal(c.size, 3);
  assert.equal(c.get(0, 1, 'a', 10_000), undefined); // expired
  assert.equal(c.sweep(10_000), 2);
  assert.equal(c.size, 0);
});

test('reverseName', () => {
  assert.equal(reverseName('10.42.1.5'), '5.1.42.10.in-addr.arpa');
  assert.equal(reverseName('::1'), undefined);
});

test('ipv4ToInt', () => {
  assert.equal(ipv4ToInt('10.42.1.5'), (10 << 24 >>> 0) + (42 << 16) + (1 << 8) + 5);
  assert.equal(ipv4ToInt('255.255.255.255'), 0xffffffff);
  for (const bad of ['256.1.1.1', '1.2.3', '1.2.3.4.5', '1..2.3', 'a.b.c.d', '1.2.3.4 ', '', '1234.1.1.1']) assert.equal(ipv4ToInt(bad), -1, bad);
});

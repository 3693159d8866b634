// The VICI wire codec (ipsec/vici/codec.ts): round trips of messages and packets, the exact bytes of a
// small message (strongSwan vici README's example), and hostile input: every malformed or oversized
// packet is a ViciProtocolError (never another exception, never unbounded buffering).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ElementType,
  FrameReader,
  PacketType,
  VICI_MAX_DEPTH,
  VICI_MAX_PACKET,
  ViciProtocolError,
  decodeMessage,
  decodePacket,
  encodeMessage,
  encodePacket,
  toStrings,
  type ViciInput,
} from '../../src/agent/capabilities/network/ipsec/vici/codec.js';

const isProtocolError = (e: unknown) => e instanceof ViciProtocolError;
const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

describe('vici codec: round trips', () => {
  it('sections, key/values, lists, empty values and binary data', () => {
    const msg: ViciInput = {
      key1: 'value1',
      empty: '',
      section1: { 'sub-section': { key2: 'value2' }, 'list-of-items': ['item1', 'item2', ''] },
      emptylist: [],
      emptysection: {},
      utf8: 'grüße ✓',
    };
    const back = toStrings(decodeMessage(encodeMessage(msg)));
    assert.deepEqual(plain(back), plain(msg));
    const bin = Buffer.from([0, 1, 2, 255, 0x80]);
    const raw = decodeMessage(encodeMessage({ data: bin, list: [bin] }));
    assert.ok(Buffer.isBuffer(raw.data) && raw.data.equals(bin));
    assert.ok(Array.isArray(raw.list) && (raw.list[0] as Buffer).equals(bin));
  });

  it('undefined values are left out', () => {
    assert.deepEqual(plain(toStrings(decodeMessage(encodeMessage({ a: 'x', b: undefined })))), { a: 'x' });
  });

  it('encodes the README example byte for byte', () => {
    // key1 = value1, section1 { sub-section { key2 = value2 } list1 [ item1 item2 ] }
    const bytes = encodeMessage({ key1: 'value1', section1: { 'sub-section': { key2: 'value2' }, list1: ['item1', 'item2'] } });
    const expect = Buffer.concat([
      Buffer.from([ElementType.KEY_VALUE, 4]),
      Buffer.from('key1'),
      Buffer.from([0, 6]),
      Buffer.from('value1'),
      Buffer.from([ElementType.SECTION_START, 8]),
      Buffer.from('section1'),
      Buffer.from([ElementType.SECTION_START, 11]),
      Buffer.from('sub-section'),
      Buffer.from([ElementType.KEY_VALUE, 4]),
      Buffer.from('key2'),
      Buffer.from([0, 6]),
      Buffer.from('value2'),
      Buffer.from([ElementType.SECTION_END]),
      Buffer.from([ElementType.LIST_START, 5]),
      Buffer.from('list1'),
      Buffer.from([ElementType.LIST_ITEM, 0, 5]),
      Buffer.from('item1'),
      Buffer.from([ElementType.LIST_ITEM, 0, 5]),
      Buffer.from('item2'),
      Buffer.from([ElementType.LIST_END]),
      Buffer.from([ElementType.SECTION_END]),
    ]);
    assert.deepEqual(bytes, expect);
  });

  it('packets: named requests, responses, events, confirms', () => {
    const req = encodePacket(PacketType.CMD_REQUEST, 'load-conn', { a: 'b' });
    assert.equal(req.readUInt32BE(0), req.length - 4);
    const p = decodePacket(req.subarray(4));
    assert.equal(p.type, PacketType.CMD_REQUEST);
    assert.equal(p.name, 'load-conn');
    assert.deepEqual(plain(toStrings(p.message ?? {})), { a: 'b' });
    const resp = decodePacket(encodePacket(PacketType.CMD_RESPONSE, undefined, { success: 'yes' }).subarray(4));
    assert.equal(resp.name, undefined);
    assert.deepEqual(plain(toStrings(resp.message ?? {})), { success: 'yes' });
    const conf = decodePacket(encodePacket(PacketType.EVENT_CONFIRM).subarray(4));
    assert.equal(conf.type, PacketType.EVENT_CONFIRM);
    assert.equal(conf.message, undefined);
    const ev = decodePacket(encodePacket(PacketType.EVENT, 'ike-updown', { up: 'yes' }).subarray(4));
    assert.equal(ev.name, 'ike-updown');
    const reg = decodePacket(encodePacket(PacketType.EVENT_REGISTER, 'list-sa').subarray(4));
    assert.equal(reg.name, 'list-sa');
  });

  it('the frame reader splits a stream however it is chunked', () => {
    const a = encodePacket(PacketType.CMD_RESPONSE, undefined, { k: 'v'.repeat(1000) });
    const b = encodePacket(PacketType.EVENT, 'list-sa', { x: { y: 'z' } });
    const c = encodePacket(PacketType.EVENT_CONFIRM);
    const stream = Buffer.concat([a, b, c]);
    for (const size of [1, 3, 4, 5, 7, 100, stream.length]) {
      const r = new FrameReader();
      const bodies: Buffer[] = [];
      for (let i = 0; i < stream.length; i += size) bodies.push(...r.push(stream.subarray(i, i + size)));
      assert.deepEqual(bodies, [a.subarray(4), b.subarray(4), c.subarray(4)], `chunk size ${size}`);
    }
  });

  it('the largest packet passes, 32 nested sections pass', () => {
    let nested: ViciInput = { k: 'v' };
    for (let i = 0; i < VICI_MAX_DEPTH; i++) nested = { s: nested };
    const m = decodeMessage(encodeMessage(nested));
    let depth = 0;
    let cur: unknown = m;
    while (cur && typeof cur === 'object' && 's' in cur) {
      cur = (cur as { s: unknown }).s;
      depth++;
    }
    assert.equal(depth, VICI_MAX_DEPTH);
    // one packet of exactly the limit: type + name + a key/value list filling it
    const items: string[] = [];
    const head = 1 + 1 + 'x'.length + 2 + 'l'.length + 1; // type, name len, name, LIST_START+len, key, LIST_END
    let left = VICI_MAX_PACKET - head;
    while (left > 3) {
      const n = Math.min(0xffff, left - 3);
      items.push('a'.repeat(n));
      left -= n + 3;
    }
    const pkt = encodePacket(PacketType.EVENT, 'x', { l: items });
    assert.ok(pkt.length - 4 <= VICI_MAX_PACKET && pkt.length - 4 > VICI_MAX_PACKET - 4);
    const r = new FrameReader();
    const [body] = r.push(pkt);
    assert.ok(body);
    assert.equal(((decodePacket(body).message?.l ?? []) as Buffer[]).length, items.length);
  });
});

describe('vici codec: hostile input is a protocol error', () => {
  const bad: [string, Buffer][] = [
    ['unknown element type', Buffer.from([9])],
    ['truncated key name', Buffer.from([ElementType.KEY_VALUE, 5, 0x61])],
    ['empty key name', Buffer.from([ElementType.KEY_VALUE, 0, 0, 0])],
    ['value longer than the message', Buffer.from([ElementType.KEY_VALUE, 1, 0x61, 0xff, 0xff, 0x61])],
    ['truncated value length', Buffer.from([ElementType.KEY_VALUE, 1, 0x61, 0])],
    ['SECTION_END without a section', Buffer.from([ElementType.SECTION_END])],
    ['unterminated section', Buffer.from([ElementType.SECTION_START, 1, 0x73])],
    ['unterminated list', Buffer.from([ElementType.LIST_START, 1, 0x6c])],
    ['LIST_ITEM outside a list', Buffer.from([ElementType.LIST_ITEM, 0, 0])],
    ['LIST_END outside a list', Buffer.from([ElementType.LIST_END])],
    ['a section inside a list', Buffer.from([ElementType.LIST_START, 1, 0x6c, ElementType.SECTION_START, 1, 0x73])],
    ['truncated list item', Buffer.from([ElementType.LIST_START, 1, 0x6c, ElementType.LIST_ITEM, 0, 9, 0x61])],
  ];
  for (const [what, buf] of bad) {
    it(what, () => assert.throws(() => decodeMessage(buf), isProtocolError));
  }

  it('sections nested deeper than the limit', () => {
    const deep = Buffer.concat([...Array.from({ length: VICI_MAX_DEPTH + 1 }, () => Buffer.from([ElementType.SECTION_START, 1, 0x73])), Buffer.alloc(VICI_MAX_DEPTH + 1, ElementType.SECTION_END)]);
    assert.throws(() => decodeMessage(deep), (e: unknown) => isProtocolError(e) && /deeper/.test((e as Error).message));
    let nested: ViciInput = { k: 'v' };
    for (let i = 0; i <= VICI_MAX_DEPTH; i++) nested = { s: nested };
    assert.throws(() => encodeMessage(nested), isProtocolError);
  });

  it('too many elements (a list of empty items)', () => {
    const items = Buffer.alloc(3 * 1000);
    for (let i = 0; i < 1000; i++) items[i * 3] = ElementType.LIST_ITEM;
    const msg = Buffer.concat([Buffer.from([ElementType.LIST_START, 1, 0x6c]), items, Buffer.from([ElementType.LIST_END])]);
    assert.throws(() => decodeMessage(msg, { maxElements: 500 }), (e: unknown) => isProtocolError(e) && /elements/.test((e as Error).message));
    assert.equal((decodeMessage(msg).l as Buffer[]).length, 1000);
  });

  it('packets: unknown type, bad name length, trailing bytes, empty', () => {
    assert.throws(() => decodePacket(Buffer.from([8])), isProtocolError);
    assert.throws(() => decodePacket(Buffer.from([PacketType.CMD_REQUEST, 10, 0x61])), isProtocolError);
    assert.throws(() => decodePacket(Buffer.from([PacketType.CMD_REQUEST])), isProtocolError);
    assert.throws(() => decodePacket(Buffer.from([PacketType.CMD_REQUEST, 0])), isProtocolError);
    assert.throws(() => decodePacket(Buffer.from([PacketType.EVENT_CONFIRM, 1])), isProtocolError);
    assert.throws(() => decodePacket(Buffer.alloc(0)), isProtocolError);
    assert.throws(() => decodePacket(Buffer.alloc(VICI_MAX_PACKET + 1)), isProtocolError);
  });

  it('an oversized length prefix is refused before anything is buffered', () => {
    const r = new FrameReader();
    const head = Buffer.alloc(4);
    head.writeUInt32BE(0xffffffff);
    assert.throws(() => r.push(head), (e: unknown) => isProtocolError(e) && /exceeds/.test((e as Error).message));
    const r2 = new FrameReader();
    head.writeUInt32BE(VICI_MAX_PACKET + 1);
    assert.throws(() => r2.push(head), isProtocolError);
    const r3 = new FrameReader();
    assert.throws(() => r3.push(Buffer.alloc(4)), (e: unknown) => isProtocolError(e) && /length 0/.test((e as Error).message));
  });

  it('a packet split into tiny chunks is buffered once, not re-concatenated per chunk', () => {
    // 256 KiB in 1-byte chunks: quadratic concatenation would copy ~32 GiB and not finish
    const pkt = encodePacket(PacketType.EVENT, 'x', { l: Array.from({ length: 4 }, () => 'a'.repeat(65_000)) });
    const r = new FrameReader();
    let got = 0;
    const t0 = Date.now();
    for (let i = 0; i < pkt.length; i++) got += r.push(pkt.subarray(i, i + 1)).length;
    assert.equal(got, 1);
    assert.ok(Date.now() - t0 < 60_000);
  });

  it('random garbage never throws anything but ViciProtocolError', () => {
    let seed = 42;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 3000; i++) {
      const len = rnd() % 64;
      const buf = Buffer.alloc(len);
      for (let j = 0; j < len; j++) buf[j] = rnd() % 8; // mostly valid element/packet types
      try {
        decodePacket(buf);
      } catch (e) {
        assert.ok(isProtocolError(e), `input ${buf.toString('hex')}: ${String(e)}`);
      }
      try {
        decodeMessage(buf);
      } catch (e) {
        assert.ok(isProtocolError(e), `input ${buf.toString('hex')}: ${String(e)}`);
      }
    }
  });

  it('encoder limits: value over 65535 bytes, key over 255 bytes, packet over the limit', () => {
    assert.throws(() => encodeMessage({ k: 'a'.repeat(65_536) }), isProtocolError);
    assert.throws(() => encodeMessage({ ['k'.repeat(256)]: 'v' }), isProtocolError);
    assert.throws(() => encodePacket(PacketType.CMD_REQUEST, 'x', { l: Array.from({ length: 9 }, () => 'a'.repeat(65_000)) }), isProtocolError);
    assert.throws(() => encodePacket(PacketType.CMD_REQUEST), isProtocolError);
  });
});

// VICI wire codec (strongSwan src/libcharon/plugins/vici/README.md): the packet layer (4-byte big-endian
// length, 1-byte packet type, a 1-byte-length name for named packets) and the message encoding
// (sections, key/values, lists). Charon's socket is an input edge: the decoder is linear in its input,
// bounded (message size, nesting depth, element count) and reports every malformation as a
// ViciProtocolError — it never throws anything else and never loops.

/** Packet types (README "Packet layer"). */
export const PacketType = {
  CMD_REQUEST: 0,
  CMD_RESPONSE: 1,
  CMD_UNKNOWN: 2,
  EVENT_REGISTER: 3,
  EVENT_UNREGISTER: 4,
  EVENT_CONFIRM: 5,
  EVENT_UNKNOWN: 6,
  EVENT: 7,
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];

/** Message element types (README "Message format"). */
export const ElementType = {
  SECTION_START: 1,
  SECTION_END: 2,
  KEY_VALUE: 3,
  LIST_START: 4,
  LIST_ITEM: 5,
  LIST_END: 6,
} as const;

/** charon's own limit (VICI_MESSAGE_SIZE_MAX in vici_socket.h): 512 KiB per packet. */
export const VICI_MAX_PACKET = 512 * 1024;
export const VICI_MAX_DEPTH = 32;
export const VICI_MAX_ELEMENTS = 100_000;

/** A decoded message: sections are objects (null prototype), lists string arrays, values strings. */
export interface ViciMessage {
  [key: string]: ViciMessage | string | string[];
}
/** The same with raw values (binary data such as DER certificates). */
export interface ViciRawMessage {
  [key: string]: ViciRawMessage | Buffer | Buffer[];
}
/** What the encoder takes: values as strings or Buffers, lists of them, nested sections. */
export interface ViciInput {
  [key: string]: ViciInput | string | Buffer | readonly (string | Buffer)[] | undefined;
}

export interface ViciPacket {
  type: PacketType;
  /** Command or event name (CMD_REQUEST, EVENT_REGISTER, EVENT_UNREGISTER, EVENT). */
  name?: string;
  /** Message (CMD_REQUEST, CMD_RESPONSE, EVENT); raw values, see `toStrings`. */
  message?: ViciRawMessage;
}

export class ViciProtocolError extends Error {
  readonly code = 'ViciProtocol';
  constructor(message: string) {
    super(`VICI protocol error: ${message}`);
    this.name = 'ViciProtocolError';
  }
}

export interface DecodeLimits {
  maxDepth?: number;
  maxElements?: number;
}

const NAMED = new Set<number>([PacketType.CMD_REQUEST, PacketType.EVENT_REGISTER, PacketType.EVENT_UNREGISTER, PacketType.EVENT]);
const WITH_MESSAGE = new Set<number>([PacketType.CMD_REQUEST, PacketType.CMD_RESPONSE, PacketType.EVENT]);

// ---------------------------------------------------------------------------------------------- encode

function nameBytes(name: string, what: string): Buffer {
  const b = Buffer.from(name, 'utf8');
  if (b.length === 0 || b.length > 255) throw new ViciProtocolError(`${what} ${JSON.stringify(name.slice(0, 40))} must be 1..255 bytes, is ${b.length}`);
  return b;
}

function valueBytes(v: string | Buffer, key: string): Buffer {
  const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
  if (b.length > 0xffff) throw new ViciProtocolError(`value of ${JSON.stringify(key)} is ${b.length} bytes, more than 65535`);
  return b;
}

function encodeInto(parts: Buffer[], msg: ViciInput, depth: number): void {
  if (depth > VICI_MAX_DEPTH) throw new ViciProtocolError(`message nests deeper than ${VICI_MAX_DEPTH} sections`);
  for (const [key, v] of Object.entries(msg)) {
    if (v === undefined) continue;
    const k = nameBytes(key, 'key');
    const head = (type: number) => Buffer.concat([Buffer.from([type, k.length]), k]);
    if (typeof v === 'string' || Buffer.isBuffer(v)) {
      const val = valueBytes(v, key);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(val.length);
      parts.push(head(ElementType.KEY_VALUE), len, val);
    } else if (Array.isArray(v)) {
      parts.push(head(ElementType.LIST_START));
      for (const item of v as readonly (string | Buffer)[]) {
        const val = valueBytes(item, key);
        const len = Buffer.alloc(3);
        len[0] = ElementType.LIST_ITEM;
        len.writeUInt16BE(val.length, 1);
        parts.push(len, val);
      }
      parts.push(Buffer.from([ElementType.LIST_END]));
    } else {
      parts.push(head(ElementType.SECTION_START));
      encodeInto(parts, v as ViciInput, depth + 1);
      parts.push(Buffer.from([ElementType.SECTION_END]));
    }
  }
}

/** The message encoding of `msg` (no packet header). */
export function encodeMessage(msg: ViciInput): Buffer {
  const parts: Buffer[] = [];
  encodeInto(parts, msg, 0);
  return Buffer.concat(parts);
}

/** A whole packet including the 4-byte length prefix, ready for the socket. */
export function encodePacket(type: PacketType, name?: string, message?: ViciInput): Buffer {
  const parts: Buffer[] = [Buffer.from([type])];
  if (NAMED.has(type)) {
    if (name === undefined) throw new ViciProtocolError(`packet type ${type} needs a name`);
    const n = nameBytes(name, 'packet name');
    parts.push(Buffer.from([n.length]), n);
  }
  if (WITH_MESSAGE.has(type) && message) parts.push(encodeMessage(message));
  const body = Buffer.concat(parts);
  if (body.length > VICI_MAX_PACKET) throw new ViciProtocolError(`packet of ${body.length} bytes exceeds ${VICI_MAX_PACKET}`);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

// ---------------------------------------------------------------------------------------------- decode

function newSection(): ViciRawMessage {
  return Object.create(null) as ViciRawMessage;
}

/**
 * Decodes a message encoding (no packet header). One pass over the input; each element consumes at
 * least one byte, so the work is linear. Duplicate keys: the last one wins.
 */
export function decodeMessage(buf: Buffer, limits: DecodeLimits = {}): ViciRawMessage {
  const maxDepth = limits.maxDepth ?? VICI_MAX_DEPTH;
  const maxElements = limits.maxElements ?? VICI_MAX_ELEMENTS;
  if (buf.length > VICI_MAX_PACKET) throw new ViciProtocolError(`message of ${buf.length} bytes exceeds ${VICI_MAX_PACKET}`);
  const root = newSection();
  const stack: ViciRawMessage[] = [root];
  let list: Buffer[] | undefined;
  let off = 0;
  let elements = 0;
  const need = (n: number, what: string) => {
    if (off + n > buf.length) throw new ViciProtocolError(`truncated ${what} at offset ${off} (needs ${n} bytes, ${buf.length - off} left)`);
  };
  const readName = (what: string): string => {
    need(1, `${what} name length`);
    const n = buf[off] as number;
    off += 1;
    if (n === 0) throw new ViciProtocolError(`empty ${what} name at offset ${off - 1}`);
    need(n, `${what} name`);
    const s = buf.toString('utf8', off, off + n);
    off += n;
    return s;
  };
  const readValue = (what: string): Buffer => {
    need(2, `${what} length`);
    const n = buf.readUInt16BE(off);
    off += 2;
    need(n, what);
    const v = Buffer.from(buf.subarray(off, off + n));
    off += n;
    return v;
  };
  while (off < buf.length) {
    if (++elements > maxElements) throw new ViciProtocolError(`more than ${maxElements} elements`);
    const type = buf[off] as number;
    const at = off;
    off += 1;
    const top = stack[stack.length - 1] as ViciRawMessage;
    if (list !== undefined) {
      if (type === ElementType.LIST_ITEM) list.push(readValue('list item'));
      else if (type === ElementType.LIST_END) list = undefined;
      else throw new ViciProtocolError(`element type ${type} at offset ${at} inside a list (only LIST_ITEM/LIST_END allowed)`);
      continue;
    }
    switch (type) {
      case ElementType.SECTION_START: {
        if (stack.length > maxDepth) throw new ViciProtocolError(`sections nested deeper than ${maxDepth}`);
        const name = readName('section');
        const s = newSection();
        top[name] = s;
        stack.push(s);
        break;
      }
      case ElementType.SECTION_END:
        if (stack.length === 1) throw new ViciProtocolError(`SECTION_END at offset ${at} without an open section`);
        stack.pop();
        break;
      case ElementType.KEY_VALUE: {
        const name = readName('key');
        top[name] = readValue(`value of ${JSON.stringify(name)}`);
        break;
      }
      case ElementType.LIST_START: {
        const name = readName('list');
        list = [];
        top[name] = list;
        break;
      }
      case ElementType.LIST_ITEM:
      case ElementType.LIST_END:
        throw new ViciProtocolError(`element type ${type} at offset ${at} outside a list`);
      default:
        throw new ViciProtocolError(`unknown element type ${type} at offset ${at}`);
    }
  }
  if (list !== undefined) throw new ViciProtocolError('message ends inside a list');
  if (stack.length !== 1) throw new ViciProtocolError(`message ends with ${stack.length - 1} section(s) open`);
  return root;
}

/** Decodes one packet body (after the length prefix). */
export function decodePacket(body: Buffer, limits: DecodeLimits = {}): ViciPacket {
  if (body.length === 0) throw new ViciProtocolError('empty packet');
  if (body.length > VICI_MAX_PACKET) throw new ViciProtocolError(`packet of ${body.length} bytes exceeds ${VICI_MAX_PACKET}`);
  const type = body[0] as number;
  if (type > PacketType.EVENT) throw new ViciProtocolError(`unknown packet type ${type}`);
  let off = 1;
  const pkt: ViciPacket = { type: type as PacketType };
  if (NAMED.has(type)) {
    if (body.length < 2) throw new ViciProtocolError(`truncated name of packet type ${type}`);
    const n = body[1] as number;
    if (n === 0 || 2 + n > body.length) throw new ViciProtocolError(`bad name length ${n} in packet type ${type}`);
    pkt.name = body.toString('utf8', 2, 2 + n);
    off = 2 + n;
  }
  if (WITH_MESSAGE.has(type)) pkt.message = decodeMessage(body.subarray(off), limits);
  else if (off !== body.length) throw new ViciProtocolError(`packet type ${type} carries ${body.length - off} unexpected bytes`);
  return pkt;
}

/** A raw message with every value as a UTF-8 string. */
export function toStrings(m: ViciRawMessage): ViciMessage {
  const out = Object.create(null) as ViciMessage;
  for (const [k, v] of Object.entries(m)) {
    if (Buffer.isBuffer(v)) out[k] = v.toString('utf8');
    else if (Array.isArray(v)) out[k] = v.map((b) => b.toString('utf8'));
    else out[k] = toStrings(v);
  }
  return out;
}

/**
 * Splits a byte stream into packet bodies. Memory is bounded: a length prefix above the limit is
 * rejected before anything is buffered, and chunks are kept in a list until a packet is complete
 * (no quadratic re-concatenation).
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private expected: number | undefined;

  constructor(private readonly maxPacket = VICI_MAX_PACKET) {}

  /** Feeds bytes; returns the complete packet bodies they finished (throws ViciProtocolError). */
  push(data: Buffer): Buffer[] {
    const out: Buffer[] = [];
    this.chunks.push(data);
    this.buffered += data.length;
    for (;;) {
      if (this.expected === undefined) {
        if (this.buffered < 4) break;
        const len = this.take(4).readUInt32BE(0);
        if (len === 0) throw new ViciProtocolError('packet length 0');
        if (len > this.maxPacket) throw new ViciProtocolError(`packet length ${len} exceeds ${this.maxPacket}`);
        this.expected = len;
      }
      if (this.buffered < this.expected) break;
      out.push(this.take(this.expected));
      this.expected = undefined;
    }
    return out;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.buffered);
    const head = Buffer.from(all.subarray(0, n));
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return head;
  }
}

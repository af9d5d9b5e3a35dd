// The batch framing of wit/FRAMING.md: records laid end to end.

export const KEY = 0x01;
export const TIMESTAMP = 0x02;
export const NAMESPACE = 0x04;
export const PORT = 0x08;
export const TOMBSTONE = 0x10;
/** Port of records a decode stage could not decode. */
export const DECODE_FAILURE_PORT = 0xffffffff;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

export function encodeText(s) {
  return utf8.encode(s);
}

export function decodeText(b) {
  return fromUtf8.decode(b);
}

/** Calls `f(key, namespace, timestamp, port, value)` for every record; absent fields are undefined. */
export function forEach(batch, f) {
  const dv = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  const end = batch.byteLength;
  let pos = 0;
  while (pos < end) {
    const flags = batch[pos];
    pos += 1;
    let key, ns, ts;
    let port = 0;
    if (flags & KEY) {
      const n = dv.getUint32(pos, true);
      pos += 4;
      key = batch.subarray(pos, pos + n);
      pos += n;
    }
    if (flags & NAMESPACE) {
      const n = dv.getUint32(pos, true);
      pos += 4;
      ns = batch.subarray(pos, pos + n);
      pos += n;
    }
    if (flags & TIMESTAMP) {
      ts = Number(dv.getBigInt64(pos, true));
      pos += 8;
    }
    if (flags & PORT) {
      port = dv.getUint32(pos, true);
      pos += 4;
    }
    if (pos + 4 > end) throw new Error("internal error: truncated batch");
    const n = dv.getUint32(pos, true);
    pos += 4;
    if (pos + n > end) throw new Error("internal error: a record value runs past the end of the batch");
    const value = batch.subarray(pos, pos + n);
    pos += n;
    f(key, ns, ts, port, value);
  }
}

/** The values of a framed list. */
export function values(batch) {
  const out = [];
  forEach(batch, (_k, _n, _t, _p, v) => out.push(v));
  return out;
}

/** Builds a batch. */
export class Writer {
  constructor(capacity = 4096) {
    this.buf = new Uint8Array(capacity);
    this.dv = new DataView(this.buf.buffer);
    this.len = 0;
    this.count = 0;
  }

  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
    this.dv = new DataView(b.buffer);
  }

  bytes_(b) {
    this.dv.setUint32(this.len, b.length, true);
    this.buf.set(b, this.len + 4);
    this.len += 4 + b.length;
  }

  push(value, key, namespace, timestamp, port = 0) {
    this.reserve(1 + 8 + 8 + 4 + 4 + value.length + (key ? key.length + 4 : 0) + (namespace ? namespace.length + 4 : 0));
    let flags = 0;
    if (key !== undefined) flags |= KEY;
    if (namespace !== undefined) flags |= NAMESPACE;
    if (timestamp !== undefined) flags |= TIMESTAMP;
    if (port) flags |= PORT;
    this.buf[this.len++] = flags;
    if (key !== undefined) this.bytes_(key);
    if (namespace !== undefined) this.bytes_(namespace);
    if (timestamp !== undefined) {
      this.dv.setBigInt64(this.len, BigInt(timestamp), true);
      this.len += 8;
    }
    if (port) {
      this.dv.setUint32(this.len, port, true);
      this.len += 4;
    }
    this.bytes_(value);
    this.count += 1;
  }

  bytes() {
    return this.buf.slice(0, this.len);
  }
}

const SIGN = 1n << 63n;
const MASK = (1n << 64n) - 1n;

/** A window's namespace: start and end with the sign bit flipped, big-endian. */
export function windowNamespace(start, end) {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, (BigInt(start) & MASK) ^ SIGN, false);
  dv.setBigUint64(8, (BigInt(end) & MASK) ^ SIGN, false);
  return b;
}

/** [start, end] of a window namespace (as numbers; the global window's bounds as BigInt-safe clamps). */
export function windowBounds(ns) {
  const dv = new DataView(ns.buffer, ns.byteOffset, ns.byteLength);
  const s = BigInt.asIntN(64, dv.getBigUint64(0, false) ^ SIGN);
  const e = BigInt.asIntN(64, dv.getBigUint64(8, false) ^ SIGN);
  return [Number(s), Number(e)];
}

// filter-as: the repo's filter (modules/examples/filter) written in
// AssemblyScript against the ABI document alone (modules/ABI.md, version 1),
// without an SDK. It drops events whose JSON payload has a top-level string
// member (config "field") equal to one of the configured values (config
// "drop"), forwards every other event, and forwards payloads that are not
// JSON objects unless config "drop_invalid" is true.
//
// Everything lives in linear memory: two 256 KiB buffers taken once from the
// stub runtime's heap, the configuration in static data. Nothing is
// allocated per event. Build: modules/build.sh (npx asc, see its header).

const IN_CAP: u32 = 256 * 1024;
const OUT_CAP: u32 = 256 * 1024;
const OUT_HEADER: usize = 24;
const KIND_FORWARD: u32 = 2;
const KIND_DROP: u32 = 3;
const ERR_FAILED: i32 = -1;
const ERR_OUT_FULL: i32 = -2;

const MAX_FIELD: i32 = 64;
const MAX_DROPS: i32 = 32;
const DROP_SLOT: i32 = 64; // bytes per drop value (at most 63)

const desc = memory.data(16, 8);
let inBuf: usize = 0;
let outBuf: usize = 0;

const fieldName = memory.data(MAX_FIELD);
let fieldLen: i32 = 0;
const drops = memory.data(MAX_DROPS * DROP_SLOT);
const dropLens = memory.data(MAX_DROPS * 4);
let nDrops: i32 = 0;
let dropInvalid = false;

// Member names of the init document, as UTF-8 bytes.
const K_CONFIG = memory.data<u8>([0x63, 0x6f, 0x6e, 0x66, 0x69, 0x67]); // config
const K_FIELD = memory.data<u8>([0x66, 0x69, 0x65, 0x6c, 0x64]); // field
const K_DROP = memory.data<u8>([0x64, 0x72, 0x6f, 0x70]); // drop
const K_DROP_INVALID = memory.data<u8>([0x64, 0x72, 0x6f, 0x70, 0x5f, 0x69, 0x6e, 0x76, 0x61, 0x6c, 0x69, 0x64]); // drop_invalid

export function bb_abi_version(): i32 {
  return 1;
}

export function bb_buffers(): usize {
  if (inBuf == 0) {
    inBuf = heap.alloc(IN_CAP);
    outBuf = heap.alloc(OUT_CAP);
  }
  store<u32>(desc, <u32>inBuf);
  store<u32>(desc, IN_CAP, 4);
  store<u32>(desc, <u32>outBuf, 8);
  store<u32>(desc, OUT_CAP, 12);
  return desc;
}

// valueEnd is set by field to the end of the value it found.
let valueEnd: usize = 0;

@inline function isSpace(c: u32): bool {
  return c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d;
}

@inline function skipSpace(p: usize, end: usize): usize {
  while (p < end && isSpace(load<u8>(p))) p++;
  return p;
}

// skipString returns the position after the string whose opening quote is
// at p, or 0 when it is not closed before end.
function skipString(p: usize, end: usize): usize {
  p++;
  while (p < end) {
    const c = load<u8>(p);
    if (c == 0x22) return p + 1;
    if (c == 0x5c) p++;
    p++;
  }
  return 0;
}

// equal reports whether the n bytes at a and b are the same.
@inline function equal(a: usize, b: usize, n: usize): bool {
  return memory.compare(a, b, n) == 0;
}

// field returns the start of the raw JSON value of the top-level member
// named by the nameLen bytes at name in the object doc..end (valueEnd is
// set to its end), or 0 when doc is not an object or has no such member.
function field(doc: usize, end: usize, name: usize, nameLen: usize): usize {
  let p = skipSpace(doc, end);
  if (p >= end || load<u8>(p) != 0x7b) return 0; // {
  p++;
  while (true) {
    p = skipSpace(p, end);
    if (p >= end || load<u8>(p) != 0x22) return 0; // '}' (not found) or malformed
    const ks = p + 1;
    p = skipString(p, end);
    if (p == 0) return 0;
    const match = p - 1 - ks == nameLen && equal(ks, name, nameLen);
    p = skipSpace(p, end);
    if (p >= end || load<u8>(p) != 0x3a) return 0; // :
    p = skipSpace(p + 1, end);
    if (p >= end) return 0;
    const vs = p;
    const c = load<u8>(p);
    if (c == 0x22) {
      p = skipString(p, end);
      if (p == 0) return 0;
    } else if (c == 0x7b || c == 0x5b) {
      let depth = 0;
      while (p < end) {
        const b = load<u8>(p);
        if (b == 0x22) {
          p = skipString(p, end);
          if (p == 0) return 0;
          continue;
        }
        if (b == 0x7b || b == 0x5b) depth++;
        else if (b == 0x7d || b == 0x5d) {
          depth--;
          if (depth == 0) break;
        }
        p++;
      }
      if (p >= end) return 0;
      p++;
    } else {
      while (p < end) {
        const b = load<u8>(p);
        if (b == 0x2c || b == 0x7d || b == 0x5d || isSpace(b)) break;
        p++;
      }
      if (p == vs) return 0;
    }
    if (match) {
      valueEnd = p;
      return vs;
    }
    p = skipSpace(p, end);
    if (p >= end || load<u8>(p) != 0x2c) return 0; // ,
    p++;
  }
  return 0; // not reached
}

// WASI's fd_write: stderr goes to the module's log on the host.
@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovsLen: u32, nwritten: usize): u16;

const iov = memory.data(16, 8);

// reject writes why the configuration is refused to stderr and returns the
// ABI's failure code (init only: the message is allocated, never freed).
function reject(msg: string): i32 {
  const b = String.UTF8.encode("filter-as: " + msg + "\n");
  store<u32>(iov, <u32>changetype<usize>(b));
  store<u32>(iov, <u32>b.byteLength, 4);
  fd_write(2, iov, 1, iov + 8);
  return ERR_FAILED;
}

// bb_init reads config.field (required), config.drop and config.drop_invalid.
export function bb_init(ptr: usize, len: i32): i32 {
  const end = ptr + <usize>len;
  const cfg = field(ptr, end, K_CONFIG, 6);
  if (cfg == 0) return reject("no [config] table in the manifest");
  const cfgEnd = valueEnd;
  // field: a non-empty string without escapes.
  const f = field(cfg, cfgEnd, K_FIELD, 5);
  if (f == 0 || load<u8>(f) != 0x22) return reject('config "field" is required (a string)');
  const fl = <i32>(valueEnd - f) - 2;
  if (fl < 1 || fl > MAX_FIELD) return reject('config "field" must be 1 to 64 bytes');
  memory.copy(fieldName, f + 1, fl);
  fieldLen = fl;
  // drop: an array of strings.
  nDrops = 0;
  const d = field(cfg, cfgEnd, K_DROP, 4);
  if (d != 0) {
    const dEnd = valueEnd;
    if (load<u8>(d) != 0x5b) return reject('config "drop" must be an array of strings');
    let p = skipSpace(d + 1, dEnd);
    while (p < dEnd && load<u8>(p) != 0x5d) {
      if (load<u8>(p) != 0x22) return reject('config "drop" must be an array of strings');
      if (nDrops == MAX_DROPS) return reject('config "drop" has more than 32 values');
      const q = skipString(p, dEnd);
      if (q == 0) return reject('config "drop": unterminated string');
      const n = <i32>(q - p) - 2;
      if (n >= DROP_SLOT) return reject('config "drop": a value is longer than 63 bytes');
      memory.copy(drops + <usize>(nDrops * DROP_SLOT), p + 1, n);
      store<i32>(dropLens + <usize>(nDrops * 4), n);
      nDrops++;
      p = skipSpace(q, dEnd);
      if (p < dEnd && load<u8>(p) == 0x2c) p = skipSpace(p + 1, dEnd);
    }
  }
  const di = field(cfg, cfgEnd, K_DROP_INVALID, 12);
  dropInvalid = di != 0 && load<u8>(di) == 0x74; // true
  return 0;
}

// keep decides one payload.
@inline function keep(d: usize, end: usize): bool {
  const v = field(d, end, fieldName, fieldLen);
  if (v == 0) return !dropInvalid;
  if (load<u8>(v) != 0x22) return true;
  const n = <i32>(valueEnd - v) - 2;
  for (let i = 0; i < nDrops; i++) {
    if (load<i32>(dropLens + <usize>(i * 4)) == n && equal(v + 1, drops + <usize>(i * DROP_SLOT), n)) return false;
  }
  return true;
}

export function bb_process(n: i32, inLen: i32): i32 {
  let p = inBuf;
  const inEnd = inBuf + <usize>inLen;
  let o = outBuf;
  const outEnd = outBuf + OUT_CAP;
  for (let i = 0; i < n; i++) {
    if (p + 40 > inEnd) return ERR_FAILED;
    const size = <usize>load<u32>(p);
    const kl = <usize>load<u32>(p, 24);
    const pl = <usize>load<u32>(p, 28);
    const dl = <usize>load<u32>(p, 32);
    if (size < 40 || p + size > inEnd || <usize>40 + kl + pl + dl > size) return ERR_FAILED;
    const d = p + 40 + kl + pl;
    if (o + OUT_HEADER > outEnd) return ERR_OUT_FULL;
    store<u32>(o, <u32>OUT_HEADER); // size
    store<u32>(o, keep(d, d + dl) ? KIND_FORWARD : KIND_DROP, 4); // kind, flags 0, route 0
    store<u32>(o, <u32>i, 8); // input
    store<u64>(o, 0, 12); // key_len, data_len
    store<u32>(o, 0, 20); // reserved
    o += OUT_HEADER;
    p += size;
  }
  return <i32>(o - outBuf);
}

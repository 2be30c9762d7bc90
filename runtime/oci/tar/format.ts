/**
 * The tar format: the USTAR header layout, PAX records and GNU extensions, as bytes. Encoding and
 * decoding only; no file system access. write.ts and read.ts build on it.
 */
import { InvalidTarError } from '../errors';

export const BLOCK = 512;

/** 8 GiB: the first value the 11 octal digits of the size and mtime fields cannot hold. */
const OCTAL_LIMIT = 8 ** 11;

/** Files up to this size are buffered and written with direct syscalls. */
export const SMALL_FILE = 256 * 1024;

interface Field {
  readonly offset: number;
  readonly length: number;
}

/** The USTAR header layout (POSIX.1-1988); the v7 and GNU layouts share the fields they have. */
const FIELDS = {
  name: { offset: 0, length: 100 },
  mode: { offset: 100, length: 8 },
  uid: { offset: 108, length: 8 },
  gid: { offset: 116, length: 8 },
  size: { offset: 124, length: 12 },
  mtime: { offset: 136, length: 12 },
  checksum: { offset: 148, length: 8 },
  type: { offset: 156, length: 1 },
  linkname: { offset: 157, length: 100 },
  magic: { offset: 257, length: 6 },
  version: { offset: 263, length: 2 },
  devmajor: { offset: 329, length: 8 },
  devminor: { offset: 337, length: 8 },
  prefix: { offset: 345, length: 155 },
} as const satisfies Record<string, Field>;

/** What the writer puts in one header. `name` uses '/' separators; directory names end with '/'. */
export interface TarHeader {
  readonly name: string;
  readonly type: 'file' | 'directory' | 'symlink';
  /** Permission bits (including setuid, setgid and sticky). */
  readonly mode: number;
  readonly size: number;
  /** Seconds since the epoch. */
  readonly mtime: number;
  readonly linkname?: string;
}

/**
 * The header block(s) for one entry: a USTAR header, preceded by a PAX extended header when the
 * name, link target, size or mtime does not fit in USTAR fields.
 */
export function tarHeader(entry: TarHeader): Buffer {
  const records: Array<[string, string]> = [];
  const split = splitUstarName(entry.name);
  if (!split) records.push(['path', entry.name]);
  const linkname = entry.linkname ?? '';
  if (!fitsUstarField(linkname, FIELDS.linkname.length)) records.push(['linkpath', linkname]);
  if (entry.size >= OCTAL_LIMIT) records.push(['size', String(entry.size)]);
  if (!fitsOctal(entry.mtime)) records.push(['mtime', String(entry.mtime)]);

  const header = ustarBlock({
    name: split?.name ?? asciiFallback(entry.name, FIELDS.name.length),
    prefix: split?.prefix ?? '',
    linkname: fitsUstarField(linkname, FIELDS.linkname.length) ? linkname : asciiFallback(linkname, FIELDS.linkname.length),
    type: { file: '0', directory: '5', symlink: '2' }[entry.type],
    mode: entry.mode,
    size: entry.size < OCTAL_LIMIT ? entry.size : 0,
    mtime: fitsOctal(entry.mtime) ? entry.mtime : 0,
  });
  if (records.length === 0) return header;

  const pax = Buffer.concat(records.map(([key, value]) => paxRecord(key, value)));
  const paxHeader = ustarBlock({
    name: paxHeaderName(entry.name),
    prefix: '',
    linkname: '',
    type: 'x',
    mode: 0o644,
    size: pax.length,
    mtime: fitsOctal(entry.mtime) ? entry.mtime : 0,
  });
  return Buffer.concat([paxHeader, pax, Buffer.alloc(padding(pax.length)), header]);
}

/** One PAX record, "<length> <key>=<value>\n", where <length> counts the whole record including itself. */
export function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  const bodyLength = Buffer.byteLength(body);
  let length = bodyLength + 1;
  while (length !== bodyLength + String(length).length) length = bodyLength + String(length).length;
  return Buffer.from(`${length}${body}`, 'utf8');
}

function ustarBlock(h: { name: string; prefix: string; linkname: string; type: string; mode: number; size: number; mtime: number }): Buffer {
  const block = Buffer.alloc(BLOCK);
  writeString(block, FIELDS.name, h.name);
  writeOctal(block, FIELDS.mode, h.mode);
  writeOctal(block, FIELDS.uid, 0);
  writeOctal(block, FIELDS.gid, 0);
  writeOctal(block, FIELDS.size, h.size);
  writeOctal(block, FIELDS.mtime, h.mtime);
  block.write(h.type, FIELDS.type.offset, 'latin1');
  writeString(block, FIELDS.linkname, h.linkname);
  block.write('ustar\0', FIELDS.magic.offset, 'latin1');
  block.write('00', FIELDS.version.offset, 'latin1');
  writeOctal(block, FIELDS.devmajor, 0);
  writeOctal(block, FIELDS.devminor, 0);
  writeString(block, FIELDS.prefix, h.prefix);
  // Six octal digits, NUL, space: the traditional layout every reader accepts.
  const sum = checksums(block).unsigned;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, FIELDS.checksum.offset, 'latin1');
  return block;
}

/** Where a name goes in USTAR's name (100 bytes) and prefix (155 bytes) fields, or undefined if it needs PAX. */
function splitUstarName(name: string): { name: string; prefix: string } | undefined {
  if (!isAscii(name)) return undefined;
  if (name.length <= FIELDS.name.length) return { name, prefix: '' };
  for (let slash = name.indexOf('/'); slash >= 0; slash = name.indexOf('/', slash + 1)) {
    const rest = name.length - slash - 1;
    if (slash > FIELDS.prefix.length) break;
    if (rest > 0 && rest <= FIELDS.name.length) return { prefix: name.slice(0, slash), name: name.slice(slash + 1) };
  }
  return undefined;
}

function fitsUstarField(value: string, length: number): boolean {
  return isAscii(value) && value.length <= length;
}

function fitsOctal(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value < OCTAL_LIMIT;
}

/** ASCII with one byte per character: UTF-8 length equals UTF-16 length only then. */
function isAscii(value: string): boolean {
  return Buffer.byteLength(value) === value.length;
}

/** What readers that ignore PAX see in a USTAR field: the printable ASCII of the value, cut to the field. */
function asciiFallback(value: string, length: number): string {
  return value.replace(/[^ -~]/g, '').slice(0, length);
}

function paxHeaderName(name: string): string {
  const base = name.replace(/\/+$/, '').split('/').pop() ?? '';
  return `PaxHeaders/${asciiFallback(base, FIELDS.name.length - 'PaxHeaders/'.length)}`;
}

function writeString(block: Buffer, field: Field, value: string): void {
  block.write(value, field.offset, field.length, 'utf8');
}

/** Zero-padded octal, NUL-terminated, as Go and GNU tar write it. */
function writeOctal(block: Buffer, field: Field, value: number): void {
  const digits = value.toString(8).padStart(field.length - 1, '0');
  if (digits.length > field.length - 1) throw new Error(`tar writer: ${value} does not fit a ${field.length}-byte octal field`);
  block.write(digits, field.offset, 'latin1');
}

export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** One parsed header block. */
export interface RawHeader {
  readonly name: string;
  readonly type: string;
  readonly mode: number;
  readonly size: number;
  readonly mtime: number;
  readonly linkname: string;
}

/** Parses one header block, after checking its checksum. Names in the prefix field apply to USTAR only. */
export function parseHeader(block: Buffer, offset: number): RawHeader {
  verifyChecksum(block, offset);
  const magic = block.toString('latin1', FIELDS.magic.offset, FIELDS.magic.offset + FIELDS.magic.length);
  let name = readString(block, FIELDS.name);
  if (magic === 'ustar\0') {
    const prefix = readString(block, FIELDS.prefix);
    if (prefix !== '') name = `${prefix}/${name}`;
  }
  return {
    name,
    type: String.fromCharCode(block[FIELDS.type.offset]),
    mode: readNumber(block, FIELDS.mode, 'mode', offset),
    size: readNumber(block, FIELDS.size, 'size', offset),
    mtime: readNumber(block, FIELDS.mtime, 'mtime', offset),
    linkname: readString(block, FIELDS.linkname),
  };
}

function verifyChecksum(block: Buffer, offset: number): void {
  const field = block.subarray(FIELDS.checksum.offset, FIELDS.checksum.offset + FIELDS.checksum.length);
  const text = field.toString('latin1').replace(/^[ \0]+|[ \0]+$/g, '');
  if (!/^[0-7]+$/.test(text)) {
    throw new InvalidTarError(`invalid tar header at offset ${offset}: the checksum field is not an octal number (not a tar archive, or corrupt)`);
  }
  const stored = parseInt(text, 8);
  const { unsigned, signed } = checksums(block);
  if (stored !== unsigned && stored !== signed) {
    throw new InvalidTarError(`invalid tar header at offset ${offset}: checksum mismatch (the header says ${stored}, its bytes sum to ${unsigned}); the archive is corrupt`);
  }
}

/** Header checksums with the checksum field counted as spaces; old writers summed signed bytes. */
function checksums(block: Buffer): { unsigned: number; signed: number } {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const inField = i >= FIELDS.checksum.offset && i < FIELDS.checksum.offset + FIELDS.checksum.length;
    const byte = inField ? 0x20 : block[i];
    unsigned += byte;
    signed += byte >= 0x80 ? byte - 0x100 : byte;
  }
  return { unsigned, signed };
}

/** A NUL-terminated string field: UTF-8 when valid, else Latin-1 (old archives). */
function readString(block: Buffer, field: Field): string {
  return cString(block.subarray(field.offset, field.offset + field.length));
}

export function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  const raw = end < 0 ? bytes : bytes.subarray(0, end);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    return raw.toString('latin1');
  }
}

/** A numeric field: octal text, or GNU base-256 when the first byte has its high bit set. */
function readNumber(block: Buffer, field: Field, what: string, offset: number): number {
  const bytes = block.subarray(field.offset, field.offset + field.length);
  if (bytes[0] >= 0x80) return readBase256(bytes, what, offset);
  const text = bytes.toString('latin1').replace(/^[ \0]+|[ \0]+$/g, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new InvalidTarError(`invalid tar header at offset ${offset}: the ${what} field "${text}" is not an octal number`);
  return parseInt(text, 8);
}

function readBase256(bytes: Buffer, what: string, offset: number): number {
  let value = 0n;
  for (const byte of bytes) value = value * 256n + BigInt(byte);
  const span = 256n ** BigInt(bytes.length);
  // 0x80 marks a positive number (drop the marker), 0xff a negative one in two's complement.
  value = bytes[0] >= 0xc0 ? value - span : value - 0x80n * (span / 256n);
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new InvalidTarError(`invalid tar header at offset ${offset}: the ${what} field is out of range`);
  }
  return Number(value);
}

export function isZeroBlock(block: Buffer): boolean {
  for (const byte of block) if (byte !== 0) return false;
  return true;
}

/** Parses "<length> <key>=<value>\n" records. */
export function parsePaxRecords(data: Buffer): Array<[string, string]> {
  const records: Array<[string, string]> = [];
  let at = 0;
  while (at < data.length && data[at] !== 0) {
    const space = data.indexOf(0x20, at);
    const lengthText = space < 0 ? '' : data.toString('latin1', at, space);
    const length = /^[0-9]+$/.test(lengthText) ? Number(lengthText) : NaN;
    const end = at + length;
    if (!(length > space - at + 1) || end > data.length || data[end - 1] !== 0x0a) {
      throw new InvalidTarError(`invalid tar: malformed PAX record at byte ${at} of an extended header`);
    }
    const record = data.subarray(space + 1, end - 1);
    const equals = record.indexOf(0x3d);
    if (equals <= 0) throw new InvalidTarError(`invalid tar: PAX record at byte ${at} has no "key=value"`);
    records.push([record.toString('utf8', 0, equals), record.toString('utf8', equals + 1)]);
    at = end;
  }
  return records;
}

/**
 * A streaming tar codec for ORAS directory layers, built on Node built-ins only.
 *
 * Writer: `tarDirectory()` streams a directory the way oras-go's file store does (Go's archive/tar):
 * USTAR headers, PAX records when a field does not fit, and exactly two zero blocks at the end, with no
 * record padding after them. oras checks `io.deis.oras.content.digest` against the sha256 of the bytes Go's
 * tar reader consumes, which for this writer is the whole stream.
 *
 * Reader: `extractTar()` unpacks USTAR, PAX, GNU and v7 archives into a directory, streams file content,
 * and refuses every entry that could write or point outside that directory.
 */
import { createHash } from 'crypto';
import { closeSync, constants, fchmodSync, futimesSync, lstatSync, openSync, readSync, Stats, writeSync } from 'fs';
import { chmod, FileHandle, link, lutimes, mkdir, open, readdir, readlink, realpath, stat, symlink, unlink, utimes } from 'fs/promises';
import { dirname, isAbsolute, join, relative } from 'path';
import { Readable } from 'stream';
import { pipeline } from 'stream/promises';
import { InvalidTarError, PathEscapeError } from './errors';
import { lstatOrUndefined } from './paths';

const BLOCK = 512;
/** Files are read in chunks of this size, so memory never grows with file size. */
const CHUNK = 64 * 1024;
/** 8 GiB: the first value the 11 octal digits of the size and mtime fields cannot hold. */
const OCTAL_LIMIT = 8 ** 11;
/** PAX and GNU long-name records are read into memory; larger ones are refused. */
const MAX_META_SIZE = 1024 * 1024;
/** Like the kernel's limit on nested symlinks while resolving a path. */
const MAX_LINK_HOPS = 40;
/** Files up to this size are buffered and written with direct syscalls. */
const SMALL_FILE = 256 * 1024;

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

// ---------------------------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------------------------

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
 * Streams `root` as a tar archive whose entries are named `prefix/...`, the first being `prefix/` itself.
 * Entries come in Go's `filepath.Walk` order (depth first, names sorted byte-wise). Every byte of the
 * stream is part of the tar, so hashing the stream gives the `io.deis.oras.content.digest` value.
 * The stream pulls from disk only as fast as it is read (backpressure).
 */
export function tarDirectory(root: string, prefix: string): Readable {
  return Readable.from(coalesce(tarChunks(root, prefix), CHUNK), { objectMode: false });
}

/** Joins small chunks into ones of about `size` bytes: each chunk costs gzip a trip to the thread pool. */
async function* coalesce(chunks: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let length = 0;
  for await (const chunk of chunks) {
    pending.push(chunk);
    length += chunk.length;
    if (length >= size) {
      yield pending.length === 1 ? pending[0] : Buffer.concat(pending, length);
      pending = [];
      length = 0;
    }
  }
  if (length > 0) yield Buffer.concat(pending, length);
}

/** Writes the archive of `tarDirectory(root, prefix)` to `out` and resolves when it has been flushed. */
export async function packDirectory(root: string, prefix: string, out: NodeJS.WritableStream): Promise<void> {
  await pipeline(tarDirectory(root, prefix), out);
}

/** The archive of `tarDirectory()` as an async generator of chunks (at most 64 KiB each). */
export async function* tarChunks(root: string, prefix: string): AsyncGenerator<Buffer> {
  const top = checkPrefix(prefix);
  const info = await stat(root);
  if (!info.isDirectory()) throw new Error(`cannot push "${root}" as a directory: it is not a directory`);
  yield tarHeader({ name: `${top}/`, type: 'directory', mode: permissions(info), size: 0, mtime: seconds(info) });
  yield* walkDirectory(root, top);
  yield Buffer.alloc(2 * BLOCK);
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

async function* walkDirectory(dir: string, name: string): AsyncGenerator<Buffer> {
  const children = (await readdir(dir, { encoding: 'buffer' })).sort((a, b) => Buffer.compare(a, b));
  for (const raw of children) {
    const child = decodeFileName(raw, dir);
    const path = join(dir, child);
    const entryName = `${name}/${child}`;
    // Metadata calls are cheaper done directly than through the thread pool.
    const info = lstatSync(path);
    if (info.isDirectory()) {
      yield tarHeader({ name: `${entryName}/`, type: 'directory', mode: permissions(info), size: 0, mtime: seconds(info) });
      yield* walkDirectory(path, entryName);
    } else if (info.isFile()) {
      // Hard links are archived as regular files, with their content.
      const header = tarHeader({ name: entryName, type: 'file', mode: permissions(info), size: info.size, mtime: seconds(info) });
      if (info.size <= SMALL_FILE) {
        yield Buffer.concat([header, smallFileContent(path, info.size)]);
      } else {
        yield header;
        yield* fileContent(path, info.size);
      }
    } else if (info.isSymbolicLink()) {
      const target = decodeFileName(await readlink(path, { encoding: 'buffer' }), path);
      yield tarHeader({ name: entryName, type: 'symlink', mode: permissions(info), size: 0, mtime: seconds(info), linkname: target });
    } else {
      throw new Error(`cannot push "${path}": it is a ${fileKind(info)}; only files, directories and symlinks can be pushed`);
    }
  }
}

/** A small file's `size` bytes and the padding to a whole block, read in one go. */
function smallFileContent(path: string, size: number): Buffer {
  const buffer = Buffer.alloc(size + padding(size));
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    for (let offset = 0; offset < size;) {
      const read = readSync(fd, buffer, offset, size - offset, null);
      if (read === 0) throw new Error(`"${path}" shrank while it was being archived (${offset} of ${size} bytes read)`);
      offset += read;
    }
  } finally {
    closeSync(fd);
  }
  return buffer;
}

/** Exactly `size` bytes of the file in fixed-size chunks, then the padding to a whole block. */
async function* fileContent(path: string, size: number): AsyncGenerator<Buffer> {
  // eslint-disable-next-line no-bitwise
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    let left = size;
    while (left > 0) {
      const buffer = Buffer.alloc(Math.min(CHUNK, left));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) throw new Error(`"${path}" shrank while it was being archived (${size - left} of ${size} bytes read)`);
      left -= bytesRead;
      yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
  if (padding(size) > 0) yield Buffer.alloc(padding(size));
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

function checkPrefix(prefix: string): string {
  const trimmed = prefix.replace(/\/+$/, '');
  const parts = trimmed.split('/');
  if (trimmed === '' || prefix.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new Error(`invalid name "${prefix}" for the archived directory: use a relative path without empty, "." or ".." components`);
  }
  return trimmed;
}

/** File names go into the archive as UTF-8, so a name that is not valid UTF-8 cannot round-trip. */
function decodeFileName(raw: Buffer, where: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    throw new Error(`cannot push "${join(where, raw.toString('utf8'))}": its name is not valid UTF-8`);
  }
}

function fileKind(info: Stats): string {
  if (info.isSocket()) return 'socket';
  if (info.isFIFO()) return 'named pipe (FIFO)';
  if (info.isCharacterDevice()) return 'character device';
  if (info.isBlockDevice()) return 'block device';
  return 'special file';
}

/** Permission bits, including setuid, setgid and sticky (the file type bits are dropped). */
function permissions(info: Stats): number {
  return info.mode % 0o10000;
}

function seconds(info: Stats): number {
  return Math.floor(info.mtimeMs / 1000);
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

// ---------------------------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------------------------

export interface ExtractOptions {
  /**
   * The directory every entry must be under, such as the layer title "data". Its entry ("data/") is the
   * destination itself, "data/x/y" becomes "x/y", and an entry outside it is an error.
   */
  readonly stripPrefix?: string;
}

export interface ExtractResult {
  /**
   * "sha256:<hex>" of the tar bytes from the first header up to and including the two end-of-archive
   * blocks: what Go's tar reader consumes, so what oras compares with `io.deis.oras.content.digest`.
   */
  readonly digest: string;
  /** How many bytes `digest` covers. */
  readonly size: number;
  /** Bytes after the end-of-archive blocks (record padding from GNU tar, for example): read and ignored. */
  readonly trailingBytes: number;
  /** Entries extracted (PAX and GNU meta entries not counted). */
  readonly entries: number;
}

type EntryKind = 'file' | 'directory' | 'symlink' | 'hardlink';

/** An entry once its PAX and GNU long-name records are applied. */
interface Entry {
  readonly name: string;
  readonly kind: EntryKind;
  readonly mode: number;
  readonly size: number;
  readonly mtime: number;
  readonly linkname: string;
}

/** One parsed header block. */
interface RawHeader {
  readonly name: string;
  readonly type: string;
  readonly mode: number;
  readonly size: number;
  readonly mtime: number;
  readonly linkname: string;
}

/** Records from 'x', 'L' and 'K' entries that apply to the next real entry. */
interface Pending {
  pax: Map<string, string>;
  longName?: string;
  longLink?: string;
}

/**
 * Extracts a tar stream into `destination` (created if missing) and resolves once every byte of
 * `input` has been read, including anything after the end-of-archive blocks. File content is streamed.
 * Directory modes and times are applied at the end, deepest first, so read-only directories do not
 * block extraction. Entries that would land or point outside `destination` are refused with a
 * PathEscapeError, symlinks once more in their final state; a malformed archive is an InvalidTarError.
 * On error the input is destroyed and what was extracted so far stays on disk, unchecked: discard it.
 */
export async function extractTar(input: AsyncIterable<Uint8Array>, destination: string, options: ExtractOptions = {}): Promise<ExtractResult> {
  const strip = options.stripPrefix === undefined ? undefined : prefixParts(options.stripPrefix);
  const reader = new ByteReader(input[Symbol.asyncIterator]());
  try {
    await mkdir(destination, { recursive: true });
    const extractor = new Extractor(await realpath(destination), strip);
    const entries = await readArchive(reader, extractor);
    await extractor.finish();
    const digest = reader.endArchive();
    const trailingBytes = await reader.drain();
    return { digest, size: reader.archiveSize, trailingBytes, entries };
  } catch (err) {
    await reader.abort();
    throw err;
  }
}

/** Reads headers until the end-of-archive blocks, extracting each entry; returns how many were extracted. */
async function readArchive(reader: ByteReader, extractor: Extractor): Promise<number> {
  const globals = new Map<string, string>();
  let pending: Pending = { pax: new Map() };
  let count = 0;
  for (;;) {
    const offset = reader.consumed;
    const block = await reader.block(`the header at offset ${offset}`);
    if (!block) throw truncated(`the stream ended at offset ${offset} without the end-of-archive blocks`);
    if (isZeroBlock(block)) {
      await readSecondZeroBlock(reader, offset);
      if (pending.pax.size > 0 || pending.longName !== undefined || pending.longLink !== undefined) {
        throw new InvalidTarError(`invalid tar: the extended header before offset ${offset} is not followed by an entry`);
      }
      return count;
    }
    const header = parseHeader(block, offset);
    switch (header.type) {
      case 'x':
        mergePax(pending.pax, await readMeta(reader, header, offset));
        break;
      case 'g':
        mergePax(globals, await readMeta(reader, header, offset));
        break;
      case 'L':
        pending.longName = cString(await readMeta(reader, header, offset));
        break;
      case 'K':
        pending.longLink = cString(await readMeta(reader, header, offset));
        break;
      default: {
        const entry = resolveEntry(header, globals, pending, offset);
        pending = { pax: new Map() };
        if (entry) {
          await extractor.extract(entry, reader);
          count += 1;
        } else {
          await reader.skip(header.size + padding(header.size), `the data of "${header.name}"`);
        }
      }
    }
  }
}

async function readSecondZeroBlock(reader: ByteReader, offset: number): Promise<void> {
  const second = await reader.block('the second end-of-archive block');
  if (!second) throw truncated(`the stream ended after the first end-of-archive block at offset ${offset}`);
  if (!isZeroBlock(second)) throw new InvalidTarError(`invalid tar: the zero block at offset ${offset} is followed by a non-zero block`);
}

/** The content of a PAX or GNU long-name entry, with its padding consumed. */
async function readMeta(reader: ByteReader, header: RawHeader, offset: number): Promise<Buffer> {
  if (header.size > MAX_META_SIZE) {
    throw new InvalidTarError(`invalid tar: the '${header.type}' header at offset ${offset} holds ${header.size} bytes (at most ${MAX_META_SIZE} are accepted)`);
  }
  const data = await reader.readAll(header.size, `the '${header.type}' header at offset ${offset}`);
  await reader.skip(padding(header.size), `the '${header.type}' header at offset ${offset}`);
  return data;
}

/** Applies PAX records to `into`; an empty value removes the key, as POSIX says. */
function mergePax(into: Map<string, string>, data: Buffer): void {
  for (const [key, value] of parsePaxRecords(data)) {
    if (key.startsWith('GNU.sparse.')) throw new InvalidTarError('unsupported tar entry: GNU sparse files cannot be extracted');
    if (value === '') into.delete(key);
    else into.set(key, value);
  }
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

/** The entry a header describes once PAX and GNU records are applied, or undefined for entries that carry nothing (volume labels). */
function resolveEntry(header: RawHeader, globals: Map<string, string>, pending: Pending, offset: number): Entry | undefined {
  const pax = new Map(globals);
  for (const [key, value] of pending.pax) pax.set(key, value);
  const name = pax.get('path') ?? pending.longName ?? header.name;
  const linkname = pax.get('linkpath') ?? pending.longLink ?? header.linkname;
  const size = pax.has('size') ? paxNumber(pax.get('size'), /^[0-9]+$/, 'size', offset) : header.size;
  const mtime = pax.has('mtime') ? paxNumber(pax.get('mtime'), /^-?[0-9]+(\.[0-9]*)?$/, 'mtime', offset) : header.mtime;
  const kind = entryKind(header.type, name);
  if (kind === undefined) return undefined;
  return { name, kind, mode: header.mode, size, mtime, linkname };
}

function paxNumber(text: string | undefined, pattern: RegExp, key: string, offset: number): number {
  const value = text !== undefined && pattern.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(value) || Math.abs(value) > Number.MAX_SAFE_INTEGER) {
    throw new InvalidTarError(`invalid tar: the PAX ${key} "${text}" for the entry at offset ${offset} is not a valid number`);
  }
  return value;
}

/** What a typeflag means for extraction; refuses the types we will not create. */
function entryKind(flag: string, name: string): EntryKind | undefined {
  switch (flag) {
    case '0':
    case '7': // contiguous file: a regular file everywhere that matters
      return 'file';
    case '\0': // v7: a trailing slash marked directories
      return name.endsWith('/') ? 'directory' : 'file';
    case '1':
      return 'hardlink';
    case '2':
      return 'symlink';
    case '5':
    case 'D': // GNU dump directory: a directory followed by a listing we do not need
      return 'directory';
    case 'V': // GNU volume label: nothing to extract
      return undefined;
    case '3':
    case '4':
    case '6': {
      const what = { 3: 'a character device', 4: 'a block device', 6: 'a named pipe (FIFO)' }[flag];
      throw new InvalidTarError(`refusing tar entry "${name}": it is ${what}; only files, directories and links are extracted`);
    }
    case 'S':
      throw new InvalidTarError(`unsupported tar entry "${name}": GNU sparse files cannot be extracted`);
    default:
      throw new InvalidTarError(`unsupported tar entry "${name}": unknown type '${flag}'`);
  }
}

/** Parses one header block, after checking its checksum. Names in the prefix field apply to USTAR only. */
function parseHeader(block: Buffer, offset: number): RawHeader {
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

function cString(bytes: Buffer): string {
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

function isZeroBlock(block: Buffer): boolean {
  for (const byte of block) if (byte !== 0) return false;
  return true;
}

function truncated(detail: string): InvalidTarError {
  return new InvalidTarError(`truncated tar: ${detail}`);
}

/** The path components of a relative, clean prefix such as "data". */
function prefixParts(prefix: string): string[] {
  const parts = prefix.split('/').filter((p) => p !== '' && p !== '.');
  if (prefix.startsWith('/') || parts.length === 0 || parts.includes('..')) {
    throw new TypeError(`invalid stripPrefix "${prefix}": use a relative path without ".." components`);
  }
  return parts;
}

function escapes(name: string, why: string): PathEscapeError {
  return new PathEscapeError(name, `refusing tar entry "${name}": it would escape the output directory (${why})`);
}

/** The components of an entry name below the output directory, refusing names that leave it. */
function entryParts(name: string, strip: string[] | undefined, what = 'path'): string[] {
  if (name === '') throw new InvalidTarError('invalid tar: an entry has an empty name');
  if (name.includes('\0')) throw new InvalidTarError(`invalid tar: the entry "${name}" has a NUL byte in its name`);
  if (name.startsWith('/')) throw escapes(name, `its ${what} is absolute`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw escapes(name, `its ${what} has a ".." component`);
  if (!strip) return parts;
  if (strip.some((part, i) => parts[i] !== part)) {
    throw new PathEscapeError(name, `refusing tar entry "${name}": it is outside the directory "${strip.join('/')}" this archive must hold`);
  }
  return parts.slice(strip.length);
}

/** Writes entries under `root` (a real path) and remembers what later entries and `finish()` need. */
class Extractor {
  /** Directories to chmod and utime at the end: absolute path -> attributes. */
  private readonly directories = new Map<string, { mode: number; mtime: number; depth: number }>();
  /** Regular files extracted so far ('/'-joined relative paths): the only allowed hard link targets. */
  private readonly files = new Set<string>();
  /** Directories known to be real directories (never replaced later), so their parents need no lstat. */
  private readonly verified = new Set<string>();
  /** Directories this extractor created empty, and every path it wrote: a new name in such a directory needs no lstat. */
  private readonly created = new Set<string>();
  private readonly written = new Set<string>();
  /** Symlinks this archive made: absolute path -> its components and entry name, checked again at the end. */
  private readonly symlinks = new Map<string, { parts: string[]; name: string }>();

  constructor(private readonly root: string, private readonly strip: string[] | undefined) {}

  async extract(entry: Entry, reader: ByteReader): Promise<void> {
    const parts = entryParts(entry.name, this.strip);
    const path = join(this.root, ...parts);
    const rel = relative(this.root, path);
    if (rel === '..' || rel.startsWith('../') || isAbsolute(rel)) throw escapes(entry.name, 'it resolves outside');
    if (parts.length === 0 && entry.kind !== 'directory') {
      throw new InvalidTarError(`refusing tar entry "${entry.name}": it names the output directory itself but is not a directory`);
    }
    await this.prepareParents(parts, entry.name);
    switch (entry.kind) {
      case 'directory':
        await this.makeDirectory(entry, parts, path);
        break;
      case 'file':
        await this.writeFile(entry, parts, path, reader);
        return; // writeFile consumed the data
      case 'symlink':
        await this.makeSymlink(entry, parts, path);
        break;
      case 'hardlink':
        await this.makeHardLink(entry, parts, path);
        break;
    }
    await reader.skip(entry.size + padding(entry.size), `the data of "${entry.name}"`);
  }

  /** Checks every symlink in its final state, then applies directory modes and times, deepest first. */
  async finish(): Promise<void> {
    await this.checkSymlinks();
    const deepestFirst = [...this.directories].sort((a, b) => b[1].depth - a[1].depth);
    for (const [path, { mode, mtime }] of deepestFirst) {
      const info = await lstatOrUndefined(path);
      if (!info?.isDirectory()) continue;
      await chmod(path, mode);
      await utimes(path, asDate(mtime), asDate(mtime));
    }
  }

  /**
   * A link that led inside when it was written can lead outside once a later entry replaces a
   * symlink it goes through (`p -> a/b/c`, `l -> p/../../../x`, then `p -> .`): what counts is the end.
   */
  private async checkSymlinks(): Promise<void> {
    for (const [path, { parts, name }] of this.symlinks) {
      const info = await lstatOrUndefined(path);
      if (!info?.isSymbolicLink()) continue;
      const target = await readlink(path);
      if (!(await resolveInside(this.root, parts.slice(0, -1), target, { left: MAX_LINK_HOPS }))) {
        throw escapes(name, `once the archive is extracted, its symlink target "${target}" leads outside`);
      }
    }
  }

  /** Creates missing parent directories and refuses to go through a symlink or a non-directory. */
  private async prepareParents(parts: string[], name: string): Promise<void> {
    let dir = this.root;
    for (const [i, part] of parts.slice(0, -1).entries()) {
      dir = join(dir, part);
      if (this.verified.has(dir)) continue;
      const info = await lstatOrUndefined(dir);
      const shown = parts.slice(0, i + 1).join('/');
      if (!info) {
        await mkdir(dir, { mode: 0o755 });
        this.created.add(dir);
      } else if (info.isSymbolicLink()) {
        throw new PathEscapeError(name, `refusing tar entry "${name}": its parent "${shown}" is a symlink, and writing through it could escape the output directory`);
      } else if (!info.isDirectory()) {
        throw new InvalidTarError(`cannot extract tar entry "${name}": its parent "${shown}" is not a directory`);
      }
      this.verified.add(dir);
    }
  }

  /** Whether nothing can exist at `path` yet: its directory was created empty by us and we wrote nothing there. */
  private isFresh(path: string): boolean {
    return this.created.has(dirname(path)) && !this.written.has(path);
  }

  /** Removes what is at `path` unless it is a directory; a directory is never replaced by something else. */
  private async clear(path: string, parts: string[], name: string, keepDirectory: boolean): Promise<boolean> {
    const fresh = this.isFresh(path);
    this.written.add(path);
    if (fresh) return false;
    const info = await lstatOrUndefined(path);
    if (!info) return false;
    if (info.isDirectory()) {
      if (keepDirectory) return true;
      throw new InvalidTarError(`cannot extract tar entry "${name}": a directory already exists at "${parts.join('/')}"`);
    }
    await unlink(path);
    this.files.delete(parts.join('/'));
    return false;
  }

  private async makeDirectory(entry: Entry, parts: string[], path: string): Promise<void> {
    const exists = await this.clear(path, parts, entry.name, true);
    if (!exists) {
      await mkdir(path, { mode: 0o755 });
      this.created.add(path);
    }
    this.verified.add(path);
    this.directories.set(path, { mode: entry.mode % 0o1000, mtime: entry.mtime, depth: parts.length });
  }

  /**
   * Streams the content into a new file (O_EXCL: never through a symlink), then sets mode and times.
   * Small files are written with direct syscalls: a round trip through the thread pool per call costs
   * more than the call itself.
   */
  private async writeFile(entry: Entry, parts: string[], path: string, reader: ByteReader): Promise<void> {
    await this.clear(path, parts, entry.name, false);
    if (entry.size <= SMALL_FILE) {
      const data = await reader.readAll(entry.size, `the data of "${entry.name}"`);
      const fd = openSync(path, 'wx', 0o600);
      try {
        for (let offset = 0; offset < data.length;) offset += writeSync(fd, data, offset);
        fchmodSync(fd, entry.mode % 0o1000);
        futimesSync(fd, asDate(entry.mtime), asDate(entry.mtime));
      } finally {
        closeSync(fd);
      }
      await reader.skip(padding(entry.size), `the data of "${entry.name}"`);
      this.files.add(parts.join('/'));
      return;
    }
    const handle = await open(path, 'wx', 0o600);
    try {
      for await (const chunk of reader.chunks(entry.size, `the data of "${entry.name}"`)) await writeAll(handle, chunk);
      // Permission bits only: setuid, setgid and sticky are dropped.
      await handle.chmod(entry.mode % 0o1000);
      await handle.utimes(asDate(entry.mtime), asDate(entry.mtime));
    } finally {
      await handle.close();
    }
    await reader.skip(padding(entry.size), `the data of "${entry.name}"`);
    this.files.add(parts.join('/'));
  }

  private async makeSymlink(entry: Entry, parts: string[], path: string): Promise<void> {
    if (entry.linkname === '') throw new InvalidTarError(`invalid tar: the symlink "${entry.name}" has an empty target`);
    if (entry.linkname.includes('\0')) throw new InvalidTarError(`invalid tar: the symlink "${entry.name}" has a NUL byte in its target`);
    if (isAbsolute(entry.linkname)) throw escapes(entry.name, `its symlink target "${entry.linkname}" is absolute`);
    const inside = await resolveInside(this.root, parts.slice(0, -1), entry.linkname, { left: MAX_LINK_HOPS });
    if (!inside) throw escapes(entry.name, `its symlink target "${entry.linkname}" leads outside, or through a path that cannot be checked`);
    await this.clear(path, parts, entry.name, false);
    await symlink(entry.linkname, path);
    this.symlinks.set(path, { parts, name: entry.name });
    await lutimes(path, asDate(entry.mtime), asDate(entry.mtime)).catch(() => undefined);
  }

  /** Hard links may only point at a regular file this archive already extracted; the result is a real hard link. */
  private async makeHardLink(entry: Entry, parts: string[], path: string): Promise<void> {
    let targetParts: string[];
    try {
      targetParts = entryParts(entry.linkname, this.strip, 'hard link target');
    } catch {
      throw escapes(entry.name, `its hard link target "${entry.linkname}" is outside`);
    }
    const target = join(this.root, ...targetParts);
    const info = this.files.has(targetParts.join('/')) ? await lstatOrUndefined(target) : undefined;
    if (!info?.isFile()) {
      throw escapes(entry.name, `its hard link target "${entry.linkname}" is not a regular file extracted earlier from this archive`);
    }
    if (target === path) return;
    await this.clear(path, parts, entry.name, false);
    await link(target, path);
    this.files.add(parts.join('/'));
  }
}

/**
 * Follows a relative symlink target from the directory `from` (components under `root`) the way the
 * kernel would, reading symlinks already on disk. Returns false when it would leave `root`. A ".." after a
 * component that does not exist yet is refused too, since that component could become a symlink later.
 */
async function resolveInside(root: string, from: string[], target: string, hops: { left: number }): Promise<{ at: string[]; real: boolean } | false> {
  if (isAbsolute(target)) return false;
  let at = [...from];
  // `real`: every component of `at` is an existing directory, so ".." from it means its parent.
  let real = true;
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (!real || at.length === 0) return false;
      at.pop();
      continue;
    }
    at.push(part);
    if (!real) continue;
    const info = await lstatOrUndefined(join(root, ...at));
    if (info?.isSymbolicLink()) {
      hops.left -= 1;
      if (hops.left < 0) return false;
      const next = await resolveInside(root, at.slice(0, -1), await readlink(join(root, ...at)), hops);
      if (!next) return false;
      ({ at, real } = next);
    } else if (!info?.isDirectory()) {
      real = false;
    }
  }
  return { at, real };
}

/** Node reads a negative number of seconds as "now"; a Date keeps times before 1970. */
function asDate(time: number): Date {
  return new Date(time * 1000);
}

async function writeAll(handle: FileHandle, chunk: Buffer): Promise<void> {
  let written = 0;
  while (written < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, written, chunk.length - written);
    written += bytesWritten;
  }
}

/**
 * Pulls bytes from the input in the sizes the parser asks for, without copying file content. It hashes every
 * byte until `endArchive()`, then only counts.
 */
class ByteReader {
  /** Bytes read so far. */
  consumed = 0;
  /** Bytes hashed (the archive up to and including its end-of-archive blocks) once `endArchive()` ran. */
  archiveSize = 0;
  private head: Buffer = Buffer.alloc(0);
  private done = false;
  private hash = createHash('sha256');
  private hashing = true;

  constructor(private readonly source: AsyncIterator<Uint8Array>) {}

  /** The next 512-byte block, or undefined if the stream ends exactly here. */
  async block(what: string): Promise<Buffer | undefined> {
    if (!(await this.fill())) return undefined;
    if (this.head.length >= BLOCK) return this.take(BLOCK);
    return this.readAll(BLOCK, what);
  }

  /** Exactly `size` bytes as one buffer (for small records). */
  async readAll(size: number, what: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const chunk of this.chunks(size, what)) parts.push(chunk);
    return Buffer.concat(parts, size);
  }

  /** Exactly `size` bytes, as the chunks they arrived in; a short stream is an error. */
  async *chunks(size: number, what: string): AsyncGenerator<Buffer> {
    let left = size;
    while (left > 0) {
      if (!(await this.fill())) throw truncated(`the stream ended inside ${what} (${left} of ${size} bytes missing)`);
      const piece = this.take(Math.min(left, this.head.length));
      left -= piece.length;
      yield piece;
    }
  }

  async skip(size: number, what: string): Promise<void> {
    for await (const chunk of this.chunks(size, what)) void chunk;
  }

  /** Marks the end of the archive and returns the digest of everything read so far. */
  endArchive(): string {
    this.hashing = false;
    this.archiveSize = this.consumed;
    return `sha256:${this.hash.digest('hex')}`;
  }

  /** Reads the rest of the input; returns how many bytes that was. */
  async drain(): Promise<number> {
    const before = this.consumed;
    while (await this.fill()) this.take(this.head.length);
    return this.consumed - before;
  }

  /** Stops the input (destroys a Readable) after an error. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.source.return?.().catch(() => undefined);
  }

  /** Makes `head` non-empty; false at the end of the input. */
  private async fill(): Promise<boolean> {
    while (this.head.length === 0) {
      if (this.done) return false;
      const next = await this.source.next();
      if (next.done) {
        this.done = true;
        return false;
      }
      this.head = toBuffer(next.value);
    }
    return true;
  }

  private take(size: number): Buffer {
    const piece = this.head.subarray(0, size);
    this.head = this.head.subarray(size);
    this.consumed += piece.length;
    if (this.hashing) this.hash.update(piece);
    return piece;
  }
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError('tar input must be a stream of bytes, not strings or objects');
}

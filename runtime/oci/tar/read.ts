/**
 * The reader: walks the headers of a USTAR, PAX, GNU or v7 archive, applies PAX and GNU long-name records,
 * and hands each entry to a sink with the reader positioned at its data. It decides nothing about where
 * entries may go: that is extract.ts.
 */
import { createHash } from 'crypto';
import { InvalidTarError } from '../errors';
import { BLOCK, cString, isZeroBlock, padding, parseHeader, parsePaxRecords, RawHeader } from './format';

/** What receives the entries: it must consume the entry's data and padding from the reader. */
export interface EntrySink {
  extract(entry: Entry, reader: ByteReader): Promise<void>;
}

/** PAX and GNU long-name records are read into memory; larger ones are refused. */
const MAX_META_SIZE = 1024 * 1024;

export type EntryKind = 'file' | 'directory' | 'symlink' | 'hardlink';

/** An entry once its PAX and GNU long-name records are applied. */
export interface Entry {
  readonly name: string;
  readonly kind: EntryKind;
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

/** Reads headers until the end-of-archive blocks, extracting each entry; returns how many were extracted. */
export async function readArchive(reader: ByteReader, extractor: EntrySink): Promise<number> {
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

function truncated(detail: string): InvalidTarError {
  return new InvalidTarError(`truncated tar: ${detail}`);
}

/**
 * Pulls bytes from the input in the sizes the parser asks for, without copying file content. It hashes every
 * byte until `endArchive()`, then only counts.
 */
export class ByteReader {
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
    return this.readAll(BLOCK, what);
  }

  /** Exactly `size` bytes as one buffer (for small records): a view of the input when they lie within one chunk. */
  async readAll(size: number, what: string): Promise<Buffer> {
    // Most entries lie within one input chunk: a view of it, without a copy.
    if (this.head.length >= size) return this.take(size);
    const parts: Buffer[] = [];
    for await (const chunk of this.chunks(size, what)) parts.push(chunk);
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, size);
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
    if (this.head.length >= size) {
      this.take(size);
      return;
    }
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

/**
 * The writer: streams a directory the way oras-go's file store does (Go's archive/tar): USTAR headers,
 * PAX records when a field does not fit, and exactly two zero blocks at the end, with no record padding
 * after them. oras checks `io.deis.oras.content.digest` against the sha256 of the bytes Go's tar reader
 * consumes, which for this writer is the whole stream.
 */
import { closeSync, constants, lstatSync, openSync, readSync, Stats } from 'fs';
import { open, readdir, readlink, stat } from 'fs/promises';
import { join } from 'path';
import { Readable } from 'stream';
import { pipeline } from 'stream/promises';
import { BLOCK, padding, SMALL_FILE, tarHeader } from './format';
import { STREAM_CHUNK } from '../chunks';


/**
 * Streams `root` as a tar archive whose entries are named `prefix/...`, the first being `prefix/` itself.
 * Entries come in Go's `filepath.Walk` order (depth first, names sorted byte-wise). Every byte of the
 * stream is part of the tar, so hashing the stream gives the `io.deis.oras.content.digest` value.
 * The stream pulls from disk only as fast as it is read (backpressure).
 */
export function tarDirectory(root: string, prefix: string): Readable {
  return Readable.from(tarChunks(root, prefix), { objectMode: false });
}

/** Writes the archive of `tarDirectory(root, prefix)` to `out` and resolves when it has been flushed. */
export async function packDirectory(root: string, prefix: string, out: NodeJS.WritableStream): Promise<void> {
  await pipeline(tarDirectory(root, prefix), out);
}

/**
 * The archive of `tarDirectory()` in chunks of STREAM_CHUNK bytes (the last one shorter): headers and
 * file content are written straight into them, so that 10,000 small files cost a few hundred buffers,
 * not tens of thousands, and each chunk is one trip to gzip's thread.
 */
export async function* tarChunks(root: string, prefix: string): AsyncGenerator<Buffer> {
  const top = checkPrefix(prefix);
  const info = await stat(root);
  if (!info.isDirectory()) throw new Error(`cannot push "${root}" as a directory: it is not a directory`);
  const chunk = new ChunkFiller(STREAM_CHUNK);
  yield* chunk.put(tarHeader({ name: `${top}/`, type: 'directory', mode: permissions(info), size: 0, mtime: seconds(info) }));
  yield* walkDirectory(root, top, chunk);
  yield* chunk.zeros(2 * BLOCK);
  if (chunk.used > 0) yield chunk.take();
}

async function* walkDirectory(dir: string, name: string, chunk: ChunkFiller): AsyncGenerator<Buffer> {
  const children = (await readdir(dir, { encoding: 'buffer' })).sort((a, b) => Buffer.compare(a, b));
  for (const raw of children) {
    const child = decodeFileName(raw, dir);
    const path = join(dir, child);
    const entryName = `${name}/${child}`;
    // Metadata calls are cheaper done directly than through the thread pool.
    const info = lstatSync(path);
    if (info.isDirectory()) {
      yield* chunk.put(tarHeader({ name: `${entryName}/`, type: 'directory', mode: permissions(info), size: 0, mtime: seconds(info) }));
      yield* walkDirectory(path, entryName, chunk);
    } else if (info.isFile()) {
      // Hard links are archived as regular files, with their content.
      yield* chunk.put(tarHeader({ name: entryName, type: 'file', mode: permissions(info), size: info.size, mtime: seconds(info) }));
      yield* fileContent(path, info.size, chunk);
      yield* chunk.zeros(padding(info.size));
    } else if (info.isSymbolicLink()) {
      const target = decodeFileName(await readlink(path, { encoding: 'buffer' }), path);
      yield* chunk.put(tarHeader({ name: entryName, type: 'symlink', mode: permissions(info), size: 0, mtime: seconds(info), linkname: target }));
    } else {
      throw new Error(`cannot push "${path}": it is a ${fileKind(info)}; only files, directories and symlinks can be pushed`);
    }
  }
}

/**
 * Exactly `size` bytes of the file, read into the chunk. Small files are read with direct calls (a trip
 * through the thread pool costs more than the read); larger ones through the pool, so that a slow disk
 * does not hold up the rest of the process.
 */
async function* fileContent(path: string, size: number, chunk: ChunkFiller): AsyncGenerator<Buffer> {
  // eslint-disable-next-line no-bitwise
  const flags = constants.O_RDONLY | constants.O_NOFOLLOW;
  const handle = size <= SMALL_FILE ? undefined : await open(path, flags);
  const fd = handle?.fd ?? openSync(path, flags);
  try {
    for (let read = 0; read < size;) {
      const length = Math.min(size - read, chunk.free);
      const n = handle ? (await handle.read(chunk.buffer, chunk.used, length, null)).bytesRead : readSync(fd, chunk.buffer, chunk.used, length, null);
      if (n === 0) throw new Error(`"${path}" shrank while it was being archived (${read} of ${size} bytes read)`);
      read += n;
      chunk.used += n;
      if (chunk.free === 0) yield chunk.take();
    }
  } finally {
    if (handle) await handle.close();
    else closeSync(fd);
  }
}

/** A buffer of fixed size being filled; `take()` hands it on once full and starts a new one. */
class ChunkFiller {
  public buffer: Buffer;
  public used = 0;

  constructor(private readonly size: number) {
    this.buffer = Buffer.allocUnsafe(size);
  }

  public get free(): number {
    return this.size - this.used;
  }

  /** Copies `bytes` in, yielding every chunk that fills up. */
  public *put(bytes: Buffer): Generator<Buffer> {
    for (let at = 0; at < bytes.length;) {
      const n = bytes.copy(this.buffer, this.used, at);
      at += n;
      this.used += n;
      if (this.free === 0) yield this.take();
    }
  }

  /** Appends `count` zero bytes. */
  public *zeros(count: number): Generator<Buffer> {
    for (let left = count; left > 0;) {
      const n = Math.min(left, this.free);
      this.buffer.fill(0, this.used, this.used + n);
      left -= n;
      this.used += n;
      if (this.free === 0) yield this.take();
    }
  }

  /** The bytes filled so far; the next ones go into a new buffer (the consumer keeps this one). */
  public take(): Buffer {
    const full = this.used === this.size ? this.buffer : this.buffer.subarray(0, this.used);
    this.buffer = Buffer.allocUnsafe(this.size);
    this.used = 0;
    return full;
  }
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

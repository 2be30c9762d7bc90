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
  return Readable.from(coalesce(tarChunks(root, prefix), STREAM_CHUNK), { objectMode: false });
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

/** The archive of `tarDirectory()` as an async generator of chunks (file content in chunks of at most STREAM_CHUNK). */
export async function* tarChunks(root: string, prefix: string): AsyncGenerator<Buffer> {
  const top = checkPrefix(prefix);
  const info = await stat(root);
  if (!info.isDirectory()) throw new Error(`cannot push "${root}" as a directory: it is not a directory`);
  yield tarHeader({ name: `${top}/`, type: 'directory', mode: permissions(info), size: 0, mtime: seconds(info) });
  yield* walkDirectory(root, top);
  yield Buffer.alloc(2 * BLOCK);
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
      const buffer = Buffer.alloc(Math.min(STREAM_CHUNK, left));
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

/**
 * The extraction policy: where entries may land and what links may point at. `extractTar()` unpacks an
 * archive into a directory, streams file content, and refuses every entry that could write or point
 * outside that directory.
 */
import { closeSync, fchmodSync, futimesSync, openSync, writeSync } from 'fs';
import { chmod, FileHandle, link, lutimes, mkdir, open, readlink, realpath, symlink, unlink, utimes } from 'fs/promises';
import { dirname, isAbsolute, join, relative } from 'path';
import { InvalidTarError, PathEscapeError } from '../errors';
import { lstatOrUndefined } from '../paths';
import { padding, SMALL_FILE } from './format';
import { ByteReader, Entry, readArchive } from './read';

/** Like the kernel's limit on nested symlinks while resolving a path. */
const MAX_LINK_HOPS = 40;

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

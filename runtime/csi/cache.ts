import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readFile, readdir, rename, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DiskFullError } from '../oci/errors';
import { walkTree } from '../oci/paths';
import { formatBytes } from '../oci/progress';

/** One artifact tree in the node cache. */
export interface CacheEntry {
  readonly key: string;
  readonly digest: string;
  readonly reference: string;
  /** The disk space the unpacked tree takes (diskBytes), as the cap counts it. */
  readonly size: number;
  /** Anonymous access to the artifact was refused: serving it needs the pod's credentials checked. */
  readonly private: boolean;
  lastUsed: number;
}

/** An artifact that does not fit under the cache's size cap, even after every unused entry went. */
export class CacheFullError extends Error {
  constructor(public readonly needed: number, public readonly maxBytes: number, public readonly inUseBytes: number) {
    super(`the artifact needs ${formatBytes(needed)}; the node cache may hold ${formatBytes(maxBytes)} (--cache-max-size), `
      + `and volumes in use hold ${formatBytes(inUseBytes)} of it`);
    this.name = 'CacheFullError';
  }
}

/**
 * Fills a temporary directory with an artifact; calls `reserve` with its
 * expected size before it writes anything. The cache then measures what it wrote.
 */
export type Filler = (dir: string, reserve: (bytes: number) => Promise<void>) => Promise<Omit<CacheEntry, 'key' | 'lastUsed' | 'size'>>;

/**
 * The disk space `dir` and everything under it take: their allocated blocks,
 * directories and symbolic links included (not followed). Ten thousand files
 * of 1 KiB take 40 MiB of 4 KiB blocks, not 10 MiB.
 */
export async function diskBytes(dir: string): Promise<number> {
  let total = (await lstat(dir)).blocks * 512;
  for await (const { path } of walkTree(dir)) total += (await lstat(join(dir, path))).blocks * 512;
  return total;
}

/** Entries' sizes in an index of this version are disk bytes; earlier indexes counted file sizes, or compressed layers. */
const INDEX_SIZES = 'disk';

interface Index {
  /** What `size` counts; absent in an index of an earlier version. */
  sizes?: typeof INDEX_SIZES;
  entries: CacheEntry[];
  /** Last digest each reference (per isolation scope) resolved to, for pull policies that may not ask the registry. */
  resolved: Record<string, string>;
}

/**
 * The node cache: complete artifact trees under content/<key>, filled in
 * tmp/ and renamed into place, so a crash never leaves a partial entry under
 * a final name. Concurrent fills of one key share a single download.
 */
export class NodeCache {
  private entries = new Map<string, CacheEntry>();
  private resolved: Record<string, string> = {};
  private readonly inflight = new Map<string, Promise<CacheEntry>>();
  private saving: Promise<void> = Promise.resolve();
  /** Bytes that fills under way have reserved. */
  private reserved = 0;

  constructor(public readonly dir: string, private readonly maxBytes: number) {}

  private get indexPath(): string {
    return join(this.dir, 'index.json');
  }

  /**
   * Loads the index, drops entries whose tree is gone and removes what
   * interrupted fills left in tmp/. Trees in `keep` (still mounted) stay even
   * when the index lost them; they come back as private entries, so that they
   * are served only after a credential check.
   */
  public async open(keep: Set<string> = new Set()): Promise<void> {
    await mkdir(join(this.dir, 'content'), { recursive: true });
    await rm(join(this.dir, 'tmp'), { recursive: true, force: true });
    await mkdir(join(this.dir, 'tmp'), { recursive: true });
    const index = await readFile(this.indexPath, 'utf8').then((t) => JSON.parse(t) as Index, () => ({ entries: [], resolved: {} }) as Index);
    const present = new Set(await readdir(join(this.dir, 'content')));
    this.entries = new Map(index.entries.filter((e) => present.has(e.key)).map((e) => [e.key, e]));
    for (const name of present) {
      if (this.entries.has(name)) {
        // Measured once after an upgrade; a current index needs no walk of the cache at start.
        if (index.sizes !== INDEX_SIZES) this.entries.set(name, { ...this.entries.get(name)!, size: await diskBytes(this.path(name)) });
        continue;
      }
      if (keep.has(name)) {
        this.entries.set(name, { key: name, digest: '', reference: '', size: await diskBytes(this.path(name)), private: true, lastUsed: Date.now() });
      } else {
        await rm(join(this.dir, 'content', name), { recursive: true, force: true });
      }
    }
    this.resolved = index.resolved ?? {};
    await this.save();
  }

  public path(key: string): string {
    return join(this.dir, 'content', key);
  }

  public get(key: string): CacheEntry | undefined {
    return this.entries.get(key);
  }

  public lastResolved(scope: string): string | undefined {
    return this.resolved[scope];
  }

  public async remember(scope: string, digest: string): Promise<void> {
    if (this.resolved[scope] === digest) return;
    this.resolved[scope] = digest;
    await this.save();
  }

  /**
   * The entry for `key`, filling it with `fill` once if it is missing. Room
   * for the fill is made first: unused entries (not in `inUse()`) go, least
   * recently used first, and the file system must have the space.
   */
  public async ensure(key: string, fill: Filler, inUse: () => Set<string>): Promise<{ entry: CacheEntry; hit: boolean }> {
    const existing = this.entries.get(key);
    if (existing) {
      existing.lastUsed = Date.now();
      return { entry: existing, hit: true };
    }
    let pending = this.inflight.get(key);
    const joined = pending !== undefined;
    if (!pending) {
      pending = this.fill(key, fill, inUse).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return { entry: await pending, hit: joined };
  }

  private async fill(key: string, fill: Filler, inUse: () => Set<string>): Promise<CacheEntry> {
    const tmp = join(this.dir, 'tmp', `${key}-${randomBytes(6).toString('hex')}`);
    let reserved = 0;
    const reserve = async (bytes: number) => {
      await this.makeRoom(bytes, inUse);
      this.reserved += bytes - reserved;
      reserved = bytes;
    };
    try {
      const info = await fill(tmp, reserve);
      await mkdir(tmp, { recursive: true });
      const size = await diskBytes(tmp);
      await rename(tmp, this.path(key));
      const entry: CacheEntry = { ...info, size, key, lastUsed: Date.now() };
      this.entries.set(key, entry);
      await this.save();
      // The reservation counted compressed layers; unpacked, the cache may now be over its cap.
      if (this.totalBytes > this.maxBytes) await this.collect(() => new Set([...inUse(), key]));
      return entry;
    } finally {
      this.reserved -= reserved;
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** Collects until `bytes` more fit under the cap, then checks the file system has them free. */
  private async makeRoom(bytes: number, inUse: () => Set<string>): Promise<void> {
    const room = this.maxBytes - this.reserved - bytes;
    if (this.totalBytes > room) await this.collect(inUse, room);
    if (this.totalBytes > room) {
      const used = inUse();
      const held = [...this.entries.values()].filter((e) => used.has(e.key)).reduce((sum, e) => sum + e.size, 0);
      throw new CacheFullError(bytes, this.maxBytes, held + this.reserved);
    }
    const fs = await statfs(this.dir);
    const free = fs.bavail * fs.bsize;
    if (free < bytes) throw new DiskFullError(this.dir, `the artifact needs ${formatBytes(bytes)}, and the file system has ${formatBytes(free)} free`);
  }

  /**
   * Deletes least recently used entries that no mount uses until the cache holds at most `target` bytes
   * (default: its cap). `inUse` is asked again before each deletion: a mount may take an entry meanwhile.
   */
  public async collect(inUse: () => Set<string>, target = this.maxBytes): Promise<string[]> {
    const removed: string[] = [];
    for (const entry of [...this.entries.values()].sort((a, b) => a.lastUsed - b.lastUsed)) {
      if (this.totalBytes <= target) break;
      if (this.entries.get(entry.key) !== entry || inUse().has(entry.key)) continue;
      this.entries.delete(entry.key);
      await rm(this.path(entry.key), { recursive: true, force: true });
      removed.push(entry.key);
    }
    if (removed.length > 0) await this.save();
    return removed;
  }

  public get totalBytes(): number {
    return [...this.entries.values()].reduce((sum, e) => sum + e.size, 0);
  }

  /** Writes the index, one save after another, each with the state current when it runs. */
  private save(): Promise<void> {
    this.saving = this.saving.catch(() => undefined).then(async () => {
      const tmp = `${this.indexPath}.${randomBytes(4).toString('hex')}`;
      await writeFile(tmp, JSON.stringify({ sizes: INDEX_SIZES, entries: [...this.entries.values()], resolved: this.resolved } satisfies Index));
      await rename(tmp, this.indexPath);
    });
    return this.saving;
  }
}

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** One artifact tree in the node cache. */
export interface CacheEntry {
  readonly key: string;
  readonly digest: string;
  readonly reference: string;
  readonly size: number;
  /** Anonymous access to the artifact was refused: serving it needs the pod's credentials checked. */
  readonly private: boolean;
  lastUsed: number;
}

interface Index {
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
      if (this.entries.has(name)) continue;
      if (keep.has(name)) {
        this.entries.set(name, { key: name, digest: '', reference: '', size: 0, private: true, lastUsed: Date.now() });
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

  /** The entry for `key`, filling it with `fill(tmpDir)` once if it is missing. */
  public async ensure(key: string, fill: (dir: string) => Promise<Omit<CacheEntry, 'key' | 'lastUsed'>>): Promise<{ entry: CacheEntry; hit: boolean }> {
    const existing = this.entries.get(key);
    if (existing) {
      existing.lastUsed = Date.now();
      return { entry: existing, hit: true };
    }
    let pending = this.inflight.get(key);
    const joined = pending !== undefined;
    if (!pending) {
      pending = this.fill(key, fill).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return { entry: await pending, hit: joined };
  }

  private async fill(key: string, fill: (dir: string) => Promise<Omit<CacheEntry, 'key' | 'lastUsed'>>): Promise<CacheEntry> {
    const tmp = join(this.dir, 'tmp', `${key}-${randomBytes(6).toString('hex')}`);
    try {
      const info = await fill(tmp);
      await mkdir(tmp, { recursive: true });
      await rename(tmp, this.path(key));
      const entry: CacheEntry = { ...info, key, lastUsed: Date.now() };
      this.entries.set(key, entry);
      await this.save();
      return entry;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** Deletes least recently used entries that no mount uses until the cache fits its size cap. */
  public async collect(inUse: Set<string>): Promise<string[]> {
    let total = [...this.entries.values()].reduce((sum, e) => sum + e.size, 0);
    const removed: string[] = [];
    const candidates = [...this.entries.values()].filter((e) => !inUse.has(e.key)).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const entry of candidates) {
      if (total <= this.maxBytes) break;
      this.entries.delete(entry.key);
      await rm(this.path(entry.key), { recursive: true, force: true });
      total -= entry.size;
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
      await writeFile(tmp, JSON.stringify({ entries: [...this.entries.values()], resolved: this.resolved } satisfies Index));
      await rename(tmp, this.indexPath);
    });
    return this.saving;
  }
}

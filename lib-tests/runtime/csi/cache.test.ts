import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { mkdir } from 'fs/promises';
import { tmpdir } from 'os';
import { join } from 'path';
import { CacheFullError, Filler, NodeCache } from '../../../runtime/csi/cache';
import { DiskFullError } from '../../../runtime/oci/errors';

const KiB = 1024;

/** A fill that reserves `reserved` bytes (what compressed layers announce) and then writes a file of `bytes`. */
const filler = (bytes: number, reserved = bytes): Filler => async (dir, reserve) => {
  await reserve(reserved);
  await mkdir(dir, { recursive: true });
  writeFileSync(join(dir, 'blob'), Buffer.alloc(bytes, 1));
  return { digest: 'sha256:x', reference: 'r.io/x:1', private: false };
};

/** Expects the disk space of an entry with one file of `bytes`: its blocks and its directory's, within a few blocks. */
function expectOnDisk(actual: number | undefined, bytes: number): void {
  expect(actual).toBeGreaterThanOrEqual(bytes);
  expect(actual).toBeLessThanOrEqual(bytes + 16 * KiB);
}

describe('NodeCache', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'oras-cache-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('a fill first makes room under the cap: unused entries go, least recently used first', async () => {
    const cache = new NodeCache(dir, 120 * KiB);
    await cache.open();
    const none = () => new Set<string>();
    await cache.ensure('a', filler(40 * KiB), none);
    await cache.ensure('b', filler(40 * KiB), none);
    expect((await cache.ensure('b', filler(40 * KiB), none)).hit).toBe(true);
    await cache.ensure('c', filler(40 * KiB), none);
    expect(readdirSync(join(dir, 'content')).sort()).toEqual(['b', 'c']);
    expect(cache.totalBytes).toBeGreaterThanOrEqual(80 * KiB);
    expect(cache.totalBytes).toBeLessThanOrEqual(120 * KiB);
  });

  test('the cap counts the disk space of unpacked trees, and a fill that unpacks beyond its reservation makes the cache collect after it', async () => {
    const cache = new NodeCache(dir, 100 * KiB);
    await cache.open();
    const none = () => new Set<string>();
    // Compressed, each announced 10 KiB; unpacked, each takes 60 KiB and more.
    await cache.ensure('a', filler(60 * KiB, 10 * KiB), none);
    expectOnDisk(cache.get('a')?.size, 60 * KiB);
    await cache.ensure('b', filler(60 * KiB, 10 * KiB), none);
    expect(readdirSync(join(dir, 'content'))).toEqual(['b']);
    expectOnDisk(cache.totalBytes, 60 * KiB);
  });

  test('collection asks again before each deletion: an entry a mount took meanwhile stays', async () => {
    const cache = new NodeCache(dir, 1024 * KiB);
    await cache.open();
    const none = () => new Set<string>();
    for (const key of ['a', 'b', 'c']) await cache.ensure(key, filler(4 * KiB), none);
    // In use from the second question on: a publish pinned it after the collection started.
    let asked = 0;
    const removed = await cache.collect(() => (++asked > 1 ? new Set(['b']) : new Set<string>()), 0);
    expect(removed).toEqual(['a', 'c']);
    expect(readdirSync(join(dir, 'content'))).toEqual(['b']);
    expect(cache.get('b')).toBeDefined();
  });

  test('small files count whole blocks: a tree of a hundred 1-byte files takes far more than 100 bytes', async () => {
    const cache = new NodeCache(dir, 10 * 1024 * KiB);
    await cache.open();
    await cache.ensure('tiny', async (target) => {
      await mkdir(target, { recursive: true });
      for (let i = 0; i < 100; i++) writeFileSync(join(target, `f${i}`), 'x');
      return { digest: 'sha256:x', reference: 'r.io/x:1', private: false };
    }, () => new Set());
    expect(cache.get('tiny')!.size).toBeGreaterThanOrEqual(100 * 4 * KiB);
  });

  test('open measures the entries again after an upgrade (an earlier index counted compressed sizes), and only then', async () => {
    const first = new NodeCache(dir, 1000 * KiB);
    await first.open();
    await first.ensure('a', filler(70 * KiB), () => new Set());
    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
    index.entries[0].size = 3;
    // A current index is trusted: no walk of the cache at start.
    writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
    const current = new NodeCache(dir, 1000 * KiB);
    await current.open();
    expect(current.get('a')?.size).toBe(3);
    // An index of an earlier version had no `sizes`.
    delete index.sizes;
    writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
    const reopened = new NodeCache(dir, 1000 * KiB);
    await reopened.open();
    expectOnDisk(reopened.get('a')?.size, 70 * KiB);
  });

  test('what cannot fit beside the entries in use is a CacheFullError, before anything is written', async () => {
    const cache = new NodeCache(dir, 100 * KiB);
    await cache.open();
    await cache.ensure('a', filler(60 * KiB), () => new Set());
    await expect(cache.ensure('b', filler(50 * KiB), () => new Set(['a']))).rejects.toBeInstanceOf(CacheFullError);
    expect(readdirSync(join(dir, 'content'))).toEqual(['a']);
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
  });

  test('more than the file system has free is a DiskFullError', async () => {
    const cache = new NodeCache(dir, Number.MAX_SAFE_INTEGER);
    await cache.open();
    await expect(cache.ensure('huge', filler(2 ** 52), () => new Set())).rejects.toBeInstanceOf(DiskFullError);
  });
});

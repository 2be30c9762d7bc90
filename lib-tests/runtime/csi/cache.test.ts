import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { mkdir } from 'fs/promises';
import { tmpdir } from 'os';
import { join } from 'path';
import { CacheFullError, Filler, NodeCache } from '../../../runtime/csi/cache';
import { DiskFullError } from '../../../runtime/oci/errors';

/** A fill that reserves `reserved` bytes (what compressed layers announce) and then writes a file of `bytes`. */
const filler = (bytes: number, reserved = bytes): Filler => async (dir, reserve) => {
  await reserve(reserved);
  await mkdir(dir, { recursive: true });
  writeFileSync(join(dir, 'blob'), Buffer.alloc(bytes));
  return { digest: 'sha256:x', reference: 'r.io/x:1', private: false };
};

describe('NodeCache', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'oras-cache-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('a fill first makes room under the cap: unused entries go, least recently used first', async () => {
    const cache = new NodeCache(dir, 100);
    await cache.open();
    const none = () => new Set<string>();
    await cache.ensure('a', filler(40), none);
    await cache.ensure('b', filler(40), none);
    expect((await cache.ensure('b', filler(40), none)).hit).toBe(true);
    await cache.ensure('c', filler(40), none);
    expect(readdirSync(join(dir, 'content')).sort()).toEqual(['b', 'c']);
    expect(cache.totalBytes).toBe(80);
  });

  test('the cap counts unpacked bytes, and a fill that unpacks beyond its reservation makes the cache collect after it', async () => {
    const cache = new NodeCache(dir, 100);
    await cache.open();
    const none = () => new Set<string>();
    // Compressed, each announced 10 bytes; unpacked, each holds 60.
    await cache.ensure('a', filler(60, 10), none);
    expect(cache.get('a')?.size).toBe(60);
    await cache.ensure('b', filler(60, 10), none);
    expect(readdirSync(join(dir, 'content'))).toEqual(['b']);
    expect(cache.totalBytes).toBe(60);
  });

  test('open measures the entries again after an upgrade (an earlier index counted compressed sizes), and only then', async () => {
    const first = new NodeCache(dir, 1000);
    await first.open();
    await first.ensure('a', filler(70), () => new Set());
    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
    index.entries[0].size = 3;
    // A current index is trusted: no walk of the cache at start.
    writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
    const current = new NodeCache(dir, 1000);
    await current.open();
    expect(current.get('a')?.size).toBe(3);
    // An index of an earlier version had no `sizes`.
    delete index.sizes;
    writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
    const reopened = new NodeCache(dir, 1000);
    await reopened.open();
    expect(reopened.get('a')?.size).toBe(70);
  });

  test('what cannot fit beside the entries in use is a CacheFullError, before anything is written', async () => {
    const cache = new NodeCache(dir, 100);
    await cache.open();
    await cache.ensure('a', filler(60), () => new Set());
    await expect(cache.ensure('b', filler(50), () => new Set(['a']))).rejects.toBeInstanceOf(CacheFullError);
    expect(readdirSync(join(dir, 'content'))).toEqual(['a']);
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
  });

  test('more than the file system has free is a DiskFullError', async () => {
    const cache = new NodeCache(dir, Number.MAX_SAFE_INTEGER);
    await cache.open();
    await expect(cache.ensure('huge', filler(2 ** 52), () => new Set())).rejects.toBeInstanceOf(DiskFullError);
  });
});

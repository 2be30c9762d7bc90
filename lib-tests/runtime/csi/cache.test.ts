import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'fs';
import { mkdir } from 'fs/promises';
import { tmpdir } from 'os';
import { join } from 'path';
import { CacheFullError, Filler, NodeCache } from '../../../runtime/csi/cache';
import { DiskFullError } from '../../../runtime/oci/errors';

/** A fill that reserves `bytes` and then writes a file of that size. */
const filler = (bytes: number): Filler => async (dir, reserve) => {
  await reserve(bytes);
  await mkdir(dir, { recursive: true });
  writeFileSync(join(dir, 'blob'), Buffer.alloc(bytes));
  return { digest: 'sha256:x', reference: 'r.io/x:1', size: bytes, private: false };
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

import { randomBytes } from 'crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { gzipSync } from 'zlib';
import { digestOf } from '../../../runtime/oci/digest';
import {
  CancelledError, ContentMismatchError, DiskFullError, InvalidManifestError, LimitError, PathEscapeError, StalledError, TimeoutError,
} from '../../../runtime/oci/errors';
import { Annotation, EMPTY_CONFIG, MediaType } from '../../../runtime/oci/media-types';
import { pull } from '../../../runtime/oci/pull';
import { push } from '../../../runtime/oci/push';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient, RegistryClientOptions } from '../../../runtime/oci/registry-client';
import { tarHeader } from '../../../runtime/oci/tar/format';
import { CraftEntry, craftTar, laterSymlinkEscape } from '../../util/crafted-tar';
import { Distribution } from '../../util/distribution';
import { FaultProxy } from '../../util/fault-proxy';
import { describeWithPeers } from '../../util/peers';
import { pushRawArtifact, RawLayer } from '../../util/raw-artifact';
import { Misbehaviour, RogueRegistry } from '../../util/rogue-registry';
import { describeTree } from '../../util/tree';
import { useRegistry } from '../../util/use-registry';

/** A tar.gz directory layer made by python's tarfile, which writes any entry name we ask for. */
const tarGz = (entries: CraftEntry[]) => gzipSync(craftTar(entries));

describeWithPeers(['docker-registry'], 'pull: safety and failures against a real registry', () => {
  let registry: Distribution;
  let client: RegistryClient;
  let scratch: string;
  let out: string;
  let sentinel: string;

  const under = useRegistry();
  beforeAll(() => {
    ({ registry, client } = under);
  });
  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), 'oras-pull-'));
    out = join(scratch, 'out');
    sentinel = join(scratch, 'outside');
    mkdirSync(sentinel);
  });
  afterEach(() => rmSync(scratch, { recursive: true, force: true }));

  /** Pushes an artifact with hand-made layers, bypassing the checks push makes. */
  const pushRaw = (tag: string, layers: RawLayer[]) => pushRawArtifact(client, `${registry.host}/pull/raw:${tag}`, layers);

  /** Everything under the scratch directory except the output directory's expected content. */
  const leftovers = (dir: string) => existsSync(dir) ? readdirSync(dir).filter((name) => name.includes('.oras-')) : [];

  test.each(['../evil', '/etc/evil', 'a/../../evil', '..', 'a//b', 'a/./b', 'back\\slash'])('refuses the layer title %j and writes nothing', async (title) => {
    const ref = await pushRaw(`t${Math.abs(title.split('').reduce((h, c) => h * 31 + c.charCodeAt(0), 7) % 1e9)}`, [
      { content: Buffer.from('fine'), title: 'fine.txt' },
      { content: Buffer.from('evil'), title },
    ]);
    await expect(pull(client, parseReference(ref), out)).rejects.toThrow(`layer title "${title}" would escape the output directory`);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(sentinel)).toEqual([]);
    expect(readdirSync(scratch).sort()).toEqual(['outside']);
  });

  test.each<[string, CraftEntry[]]>([
    ['a ../ entry', [{ name: 'data/../../escaped.txt', data: 'x' }]],
    ['an absolute entry', [{ name: '/tmp/escaped.txt', data: 'x' }]],
    ['a symlink out of the tree', [{ name: 'data/link', type: 'symlink', linkname: '../../outside' }]],
    ['a write through a symlink', [
      { name: 'data/link', type: 'symlink', linkname: '.' },
      { name: 'data/link/../../../outside/pwned', data: 'x' },
    ]],
    ['a symlink that a later entry makes lead outside', laterSymlinkEscape('data')],
  ])('refuses a directory layer with %s; nothing appears under its title', async (_name, entries) => {
    const ref = await pushRaw(`tar${entries.length}${entries[0].name.length}`, [{
      content: tarGz(entries), title: 'data', mediaType: MediaType.LAYER_TAR_GZIP, annotations: { [Annotation.UNPACK]: 'true' },
    }]);
    await expect(pull(client, parseReference(ref), out)).rejects.toBeInstanceOf(PathEscapeError);
    expect(readdirSync(sentinel)).toEqual([]);
    expect(existsSync(join(out, 'data'))).toBe(false);
    expect(leftovers(out)).toEqual([]);
    expect(existsSync('/tmp/escaped.txt')).toBe(false);
  });

  test('refuses to write through a symlink already in the output directory', async () => {
    mkdirSync(out);
    symlinkSync(sentinel, join(out, 'sub'));
    const ref = await pushRaw('symparent', [{ content: Buffer.from('x'), title: 'sub/file.txt' }]);
    await expect(pull(client, parseReference(ref), out)).rejects.toThrow('"sub" in the output directory is a symlink; refusing to write "sub/file.txt" through it');
    expect(readdirSync(sentinel)).toEqual([]);
  });

  test('two layers with one title but different content are refused before anything is written', async () => {
    const ref = await pushRaw('dup', [{ content: Buffer.from('one'), title: 'same.txt' }, { content: Buffer.from('two'), title: 'same.txt' }]);
    await expect(pull(client, parseReference(ref), out)).rejects.toThrow(/two layers are titled "same.txt" with different content/);
    expect(existsSync(out)).toBe(false);
  });

  test('layers without a title are skipped; the same content under one title twice is written once', async () => {
    const ref = await pushRaw('untitled', [
      { content: Buffer.from('anonymous') },
      { content: Buffer.from('twice'), title: 'twice.txt' },
      { content: Buffer.from('twice'), title: 'twice.txt' },
    ]);
    const result = await pull(client, parseReference(ref), out);
    expect(readdirSync(out)).toEqual(['twice.txt']);
    expect(result.layers.map((l) => l.title)).toEqual(['twice.txt']);
  });

  test('an existing file is replaced; a directory layer merges into an existing directory and keeps the other files, as oras pull does', async () => {
    mkdirSync(join(out, 'tree', 'sub'), { recursive: true });
    writeFileSync(join(out, 'tree', 'mine.txt'), 'mine');
    writeFileSync(join(out, 'tree', 'sub', 'mine.txt'), 'mine too');
    writeFileSync(join(out, 'tree', 'fresh.txt'), 'stale');
    writeFileSync(join(out, 'file.txt'), 'old');
    const ref = await pushRaw('replace', [
      { content: Buffer.from('new'), title: 'file.txt' },
      {
        content: tarGz([{ name: 'tree/fresh.txt', data: 'fresh' }, { name: 'tree/sub/new.txt', data: 'new' }]),
        title: 'tree',
        mediaType: MediaType.LAYER_TAR_GZIP,
        annotations: { [Annotation.UNPACK]: 'true' },
      },
    ]);
    await pull(client, parseReference(ref), out);
    expect(readFileSync(join(out, 'file.txt'), 'utf8')).toBe('new');
    expect(readdirSync(join(out, 'tree')).sort()).toEqual(['fresh.txt', 'mine.txt', 'sub']);
    expect(readFileSync(join(out, 'tree', 'fresh.txt'), 'utf8')).toBe('fresh');
    expect(readdirSync(join(out, 'tree', 'sub')).sort()).toEqual(['mine.txt', 'new.txt']);
    expect(leftovers(out)).toEqual([]);
  });

  test('a directory layer whose tar does not match io.deis.oras.content.digest is refused', async () => {
    const ref = await pushRaw('contentdigest', [{
      content: tarGz([{ name: 'tree/a.txt', data: 'a' }]),
      title: 'tree',
      mediaType: MediaType.LAYER_TAR_GZIP,
      annotations: { [Annotation.UNPACK]: 'true', [Annotation.CONTENT_DIGEST]: digestOf('something else') },
    }]);
    await expect(pull(client, parseReference(ref), out)).rejects.toThrow(/directory "tree" \(uncompressed tar\): content does not match/);
    expect(existsSync(join(out, 'tree'))).toBe(false);
    expect(leftovers(out)).toEqual([]);
  });

  test('--no-unpack keeps a directory layer as its tarball, named by the title', async () => {
    const tarball = tarGz([{ name: 'tree/a.txt', data: 'a' }]);
    const ref = await pushRaw('nounpack', [{ content: tarball, title: 'tree', mediaType: MediaType.LAYER_TAR_GZIP, annotations: { [Annotation.UNPACK]: 'true' } }]);
    await pull(client, parseReference(ref), out, { unpack: false });
    expect(readFileSync(join(out, 'tree')).equals(tarball)).toBe(true);
  });

  test('the media type filter keeps only the layers asked for', async () => {
    const ref = await pushRaw('filter', [
      { content: Buffer.from('model'), title: 'model.bin', mediaType: 'application/vnd.example.model' },
      { content: Buffer.from('notes'), title: 'notes.txt' },
    ]);
    await pull(client, parseReference(ref), out, { mediaTypes: ['application/vnd.example.model'] });
    expect(readdirSync(out)).toEqual(['model.bin']);
  });

  test('beforeTransfer gets the layers that will be written, before anything is; its refusal leaves nothing', async () => {
    const ref = await pushRaw('before', [
      { content: Buffer.from('anonymous') },
      { content: Buffer.from('model'), title: 'model.bin', mediaType: 'application/vnd.example.model' },
      { content: Buffer.from('notes'), title: 'notes.txt' },
    ]);
    const seen: Array<[string, number]> = [];
    const refusal = new Error('no room');
    await expect(pull(client, parseReference(ref), out, {
      mediaTypes: ['application/vnd.example.model', MediaType.LAYER_TAR],
      beforeTransfer: async (layers) => {
        seen.push(...layers.map((l): [string, number] => [l.annotations?.[Annotation.TITLE] ?? '', l.size]));
        expect(existsSync(out)).toBe(false);
        throw refusal;
      },
    })).rejects.toBe(refusal);
    expect(seen).toEqual([['model.bin', 5], ['notes.txt', 5]]);
    expect(existsSync(out)).toBe(false);
  });

  test('many layers in parallel all arrive', async () => {
    const layers = Array.from({ length: 24 }, (_, i) => ({ content: Buffer.from(`content ${i}\n`.repeat(i * 100 + 1)), title: `f/${i}.txt` }));
    const ref = await pushRaw('many', layers);
    await pull(client, parseReference(ref), out, { concurrency: 6 });
    for (const layer of layers) expect(readFileSync(join(out, layer.title)).equals(layer.content)).toBe(true);
  });

  describe('through a fault-injecting proxy', () => {
    let proxy: FaultProxy;
    let proxied: RegistryClient;
    const blob = Buffer.from('0123456789'.repeat(10_000));
    let ref: string;

    beforeAll(async () => {
      ref = await pushRaw('faults', [{ content: blob, title: 'blob.bin' }]);
      proxy = await FaultProxy.start(registry.host);
    });
    afterAll(async () => proxy.stop());
    beforeEach(() => {
      proxied = new RegistryClient(proxy.host, { plainHttp: true, retryBaseMs: 10 });
      proxy.requests.length = 0;
    });
    afterEach(() => proxied.close());
    const viaProxy = () => parseReference(ref.replace(registry.host, proxy.host));
    const isBlob = (path: string) => path.includes('/blobs/sha256:');

    test('5xx answers are retried with backoff', async () => {
      proxy.rule = (_method, _path, count) => (count < 2 ? { kind: 'status', status: 503 } : undefined);
      await pull(proxied, viaProxy(), out);
      expect(readFileSync(join(out, 'blob.bin')).equals(blob)).toBe(true);
      expect(proxy.requests.filter((r) => r.fault === 'status').length).toBeGreaterThanOrEqual(4);
    });

    test('a registry that keeps failing gives the status and code, and nothing is written', async () => {
      proxy.rule = (_method, path) => (isBlob(path) ? { kind: 'status', status: 500 } : undefined);
      await expect(pull(proxied, viaProxy(), out)).rejects.toThrow(/GET http:\/\/127\.0\.0\.1:\d+\/v2\/pull\/raw\/blobs\/sha256:[0-9a-f]{64}: 500 UNAVAILABLE: injected fault/);
      expect(existsSync(join(out, 'blob.bin'))).toBe(false);
      expect(leftovers(out)).toEqual([]);
    });

    test('a blob truncated once is fetched again', async () => {
      proxy.rule = (_method, path, count) => (isBlob(path) && count === 0 ? { kind: 'truncate', afterBytes: 5000 } : undefined);
      await pull(proxied, viaProxy(), out);
      expect(readFileSync(join(out, 'blob.bin')).equals(blob)).toBe(true);
    });

    test('a blob that is always truncated fails with a clear error and leaves no partial file', async () => {
      proxy.rule = (_method, path) => (isBlob(path) ? { kind: 'truncate', afterBytes: 5000 } : undefined);
      await expect(pull(proxied, viaProxy(), out)).rejects.toThrow(/blob "blob.bin" \(sha256:[0-9a-f]{64}\): (the transfer broke after \d+ of 100000 bytes \(aborted\); nothing was written|.*socket hang up)/);
      expect(existsSync(join(out, 'blob.bin'))).toBe(false);
      expect(leftovers(out)).toEqual([]);
    });

    test('a corrupted blob is refused by digest and leaves nothing', async () => {
      proxy.rule = (_method, path) => (isBlob(path) ? { kind: 'corrupt' } : undefined);
      await expect(pull(proxied, viaProxy(), out)).rejects.toThrow(/blob "blob.bin" \(sha256:[0-9a-f]{64}\): content does not match: expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}/);
      expect(existsSync(join(out, 'blob.bin'))).toBe(false);
      expect(leftovers(out)).toEqual([]);
    });

    test('a corrupted manifest is refused by the digest the registry states', async () => {
      proxy.rule = (method, path) => (path.includes('/manifests/') && method === 'GET' ? { kind: 'corrupt' } : undefined);
      await expect(pull(proxied, viaProxy(), out)).rejects.toThrow(/manifest 127\.0\.0\.1:\d+\/pull\/raw@sha256:[0-9a-f]{64}: content does not match/);
      expect(existsSync(out)).toBe(false);
    });

    /** A directory layer of 40 files that do not compress, pushed directly; its reference through the proxy. */
    const pushTree = async (tag: string) => {
      const src = join(scratch, 'tree-src');
      for (let i = 0; i < 40; i++) {
        mkdirSync(join(src, 'tree', `d${i % 4}`), { recursive: true });
        writeFileSync(join(src, 'tree', `d${i % 4}`, `f${i}.bin`), randomBytes(2000 + i * 100));
      }
      const direct = parseReference(`${registry.host}/pull/tree:${tag}`);
      await push(client, direct, [{ path: 'tree' }], { cwd: src });
      return { src: join(src, 'tree'), ref: parseReference(`${proxy.host}/pull/tree:${tag}`) };
    };
    const treeGets = () => proxy.requests.filter((r) => r.method === 'GET' && isBlob(r.path)).length;

    test('a directory layer whose transfer breaks while it unpacks is fetched again, and unpacks whole', async () => {
      const tree = await pushTree('truncated');
      proxy.requests.length = 0;
      let broken = false;
      proxy.rule = (method, path) => {
        if (method !== 'GET' || !isBlob(path) || broken) return undefined;
        broken = true;
        return { kind: 'truncate', afterBytes: 40_000 };
      };
      await pull(proxied, tree.ref, out);
      expect(describeTree(join(out, 'tree'))).toEqual(describeTree(tree.src));
      expect(treeGets()).toBe(2);
      expect(leftovers(out)).toEqual([]);
    });

    test('a corrupted directory layer is refused by its digest (not as bad gzip), and nothing stays', async () => {
      const tree = await pushTree('corrupt');
      proxy.rule = (method, path) => (method === 'GET' && isBlob(path) ? { kind: 'corrupt' } : undefined);
      const error = await pull(proxied, tree.ref, out).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(ContentMismatchError);
      expect((error as ContentMismatchError).truncated).toBe(false);
      expect(existsSync(join(out, 'tree'))).toBe(false);
      expect(leftovers(out)).toEqual([]);
    });

    test('dropped connections are retried', async () => {
      proxy.rule = (_method, _path, count) => (count === 0 ? { kind: 'drop' } : undefined);
      await pull(proxied, viaProxy(), out);
      expect(readFileSync(join(out, 'blob.bin')).equals(blob)).toBe(true);
    });
  });

  test('push then pull round-trips through our own client', async () => {
    const src = join(scratch, 'src');
    mkdirSync(join(src, 'dir', 'sub'), { recursive: true });
    writeFileSync(join(src, 'dir', 'sub', 'x.txt'), 'x');
    writeFileSync(join(src, 'top.txt'), 'top');
    const ref = parseReference(`${registry.host}/pull/roundtrip:v1`);
    const pushed = await push(client, ref, [{ path: 'top.txt' }, { path: 'dir' }], { cwd: src });
    const pulled = await pull(client, ref, out);
    expect(pulled.digest).toBe(pushed.digest);
    expect(readFileSync(join(out, 'dir', 'sub', 'x.txt'), 'utf8')).toBe('x');
    expect(readFileSync(join(out, 'top.txt'), 'utf8')).toBe('top');
  });
});

describe('pull from a registry that misbehaves', () => {
  let rogue: RogueRegistry;
  let scratch: string;
  let out: string;
  let client: RegistryClient;
  /** A quick client: short backoff, two attempts, a stall is 4 KiB in 300 ms. */
  const quick = (options: RegistryClientOptions = {}) =>
    new RegistryClient(rogue.host, { plainHttp: true, retryBaseMs: 5, attempts: 2, minRate: { bytes: 4096, windowMs: 300 }, ...options });
  const blobRequests = (digest: string) => rogue.requests.filter((r) => r.endsWith(`/blobs/${digest}`)).length;
  /** What the pull left in the output directory. */
  const left = () => (existsSync(out) ? readdirSync(out) : []);
  const failure = async (promise: Promise<unknown>) => promise.then(() => { throw new Error('the pull succeeded'); }, (err: Error) => err);
  const dirLayer = (content: Buffer, title = 'tree') => ({ content, title, mediaType: MediaType.LAYER_TAR_GZIP, annotations: { [Annotation.UNPACK]: 'true' } });

  beforeAll(async () => { rogue = await RogueRegistry.start(); });
  afterAll(async () => rogue.stop());
  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), 'oras-rogue-'));
    out = join(scratch, 'out');
    client = quick();
    rogue.requests.length = 0;
  });
  afterEach(() => {
    client.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  test.each<[string, Misbehaviour | undefined, Buffer]>([
    ['sends bytes without end', { kind: 'endless' }, Buffer.from('hello, world\n')],
    ['drips 300 KiB with a Content-Length that says so', { kind: 'drip', bytes: 1024, everyMs: 50 }, Buffer.alloc(300 * 1024, 7)],
  ])('a blob declared as 13 bytes that %s: reading stops at once, without a retry', async (_what, misbehaviour, content) => {
    const ref = rogue.artifact('rogue/oversized', `o${content.length}`, [{ content, title: 'small.txt', declaredSize: 13, misbehaviour }]);
    const digest = digestOf(content);
    const started = Date.now();
    const error = await failure(pull(client, parseReference(ref), out));
    expect(error).toBeInstanceOf(ContentMismatchError);
    expect(error).toMatchObject({ oversized: true, truncated: false });
    expect(error.message).toContain('the registry sent more than the 13 bytes declared');
    expect(Date.now() - started).toBeLessThan(3000);
    expect(blobRequests(digest)).toBe(1);
    expect(left()).toEqual([]);
  }, 10_000);

  test('a size given as a string is a permanent error that names the field, before any blob is asked for', async () => {
    const content = Buffer.from('typed badly\n');
    const ref = rogue.artifact('rogue/typed', 'v1', [{ content, title: 'a.txt', declaredSize: '12' }]);
    const error = await failure(pull(client, parseReference(ref), out));
    expect(error).toBeInstanceOf(InvalidManifestError);
    expect(error).toMatchObject({ field: 'layers[0].size' });
    expect(error.message).toMatch(/manifest .*rogue\/typed@sha256:[0-9a-f]{64} is invalid: layers\[0\]\.size must be a non-negative integer, not "12" \(a string\)/);
    expect(blobRequests(digestOf(content))).toBe(0);
  });

  test('a gzip bomb stops at the unpacked-size limit, and nothing stays', async () => {
    const zeros = 64 * 1024 * 1024;
    const tar = Buffer.concat([
      tarHeader({ name: 'tree/', type: 'directory', mode: 0o755, size: 0, mtime: 0 }),
      tarHeader({ name: 'tree/zeros', type: 'file', mode: 0o644, size: zeros, mtime: 0 }),
      Buffer.alloc(zeros + 1024),
    ]);
    const bomb = gzipSync(tar, { level: 1 });
    const ref = rogue.artifact('rogue/bomb', 'v1', [dirLayer(bomb)]);
    const error = await failure(pull(client, parseReference(ref), out, { maxUnpackedBytes: 1024 * 1024 }));
    expect(error).toBeInstanceOf(LimitError);
    expect(error.message).toBe('directory layer "tree" unpacked exceeds the limit of 1048576 bytes; '
      + 'raise it with --max-unpacked-size (maxUnpackedBytes) if the artifact is trusted');
    expect(left()).toEqual([]);
    // The same layer within a larger limit is fine: the limit is the only thing that stopped it.
    await pull(client, parseReference(ref), out, { maxUnpackedBytes: 2 * zeros });
    expect(statSync(join(out, 'tree', 'zeros')).size).toBe(zeros);
  }, 30_000);

  test('a body that drips is a stall: the transfer fails after the window, not after the drip', async () => {
    const content = Buffer.alloc(64 * 1024, 1);
    const ref = rogue.artifact('rogue/drip', 'v1', [{ content, title: 'slow.bin', misbehaviour: { kind: 'drip', bytes: 16, everyMs: 20 } }]);
    const started = Date.now();
    const error = await failure(pull(client, parseReference(ref), out));
    expect(error).toBeInstanceOf(StalledError);
    expect(error.message).toMatch(/GET http:\/\/127\.0\.0\.1:\d+\/v2\/rogue\/drip\/blobs\/sha256:[0-9a-f]{64}: the transfer stalled \(\d+ bytes in 300 ms, the minimum is 4096\)/);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(blobRequests(digestOf(content))).toBe(2);
    expect(left()).toEqual([]);
  }, 10_000);

  test('timeoutMs ends a pull whose request hangs, with a TimeoutError, and leaves nothing', async () => {
    const content = Buffer.from('never sent');
    const ref = rogue.artifact('rogue/hang', 'v1', [{ content, title: 'hang.txt', misbehaviour: { kind: 'hang' } }]);
    const started = Date.now();
    const error = await failure(pull(client, parseReference(ref), out, { timeoutMs: 500 }));
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.message).toBe(`pull ${ref} timed out after 0.5 s`);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(left()).toEqual([]);
  }, 10_000);

  test('an AbortSignal cancels a pull mid-transfer with its reason, and leaves nothing', async () => {
    const content = Buffer.alloc(100_000, 2);
    const ref = rogue.artifact('rogue/abort', 'v1', [{ content, title: 'part.bin', misbehaviour: { kind: 'stall', afterBytes: 50_000 } }]);
    const controller = new AbortController();
    const reason = new CancelledError('the test says stop');
    const pulling = failure(pull(quick({ minRate: { bytes: 0, windowMs: 1000 } }), parseReference(ref), out, { signal: controller.signal }));
    while (blobRequests(digestOf(content)) === 0) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100));
    expect(readdirSync(out).filter((name) => name.startsWith('.oras-pull-'))).toHaveLength(1);
    controller.abort(reason);
    expect(await pulling).toBe(reason);
    expect(left()).toEqual([]);
  }, 10_000);

  test('a failed layer leaves none of the layers that succeeded under their final names', async () => {
    const good = Buffer.from('good');
    const ref = rogue.artifact('rogue/partial', 'v1', [
      { content: good, title: 'good.txt' },
      dirLayer(gzipSync(craftTar([{ name: 'tree/a.txt', data: 'a' }]))),
      { content: Buffer.from('missing'), title: 'missing.txt' },
    ]);
    rogue.misbehave(digestOf(Buffer.from('missing')), { kind: 'stall', afterBytes: 0 });
    mkdirSync(out);
    writeFileSync(join(out, 'mine.txt'), 'mine');
    const error = await failure(pull(client, parseReference(ref), out, { concurrency: 1 }));
    expect(error).toBeInstanceOf(StalledError);
    expect(blobRequests(digestOf(good))).toBe(1);
    expect(readdirSync(out)).toEqual(['mine.txt']);
  }, 10_000);

  test('an index that lists one child 1000 times fetches and pulls it once', async () => {
    const content = Buffer.from('once');
    rogue.artifact('rogue/fanout', 'child', [{ content, title: 'once.txt' }]);
    const child = await client.resolve('rogue/fanout', 'child');
    rogue.manifest('rogue/fanout', { schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: Array(1000).fill(child) }, 'index');
    const result = await pull(client, parseReference(`${rogue.host}/rogue/fanout:index`), out);
    expect(result.layers.map((l) => l.title)).toEqual(['once.txt']);
    expect(rogue.requests.filter((r) => r === `GET /v2/rogue/fanout/manifests/${child.digest}`)).toHaveLength(1);
    expect(blobRequests(digestOf(content))).toBe(1);
  });

  test('more distinct manifests or layers than allowed: a LimitError that names the limit', async () => {
    const children = Array.from({ length: 5 }, (_, i) => rogue.manifest('rogue/limits', {
      schemaVersion: 2,
      mediaType: MediaType.OCI_MANIFEST,
      config: EMPTY_CONFIG,
      layers: [],
      annotations: { n: String(i) },
    }));
    rogue.manifest('rogue/limits', { schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: children }, 'index');
    const manifests = await failure(pull(client, parseReference(`${rogue.host}/rogue/limits:index`), out, { maxManifests: 3 }));
    expect(manifests).toBeInstanceOf(LimitError);
    expect(manifests).toMatchObject({ limit: 'manifests', value: 3 });

    const layers = Array.from({ length: 20 }, (_, i) => ({ content: Buffer.from(`layer ${i}`), title: `f${i}.txt` }));
    const many = rogue.artifact('rogue/limits', 'many', layers);
    const error = await failure(pull(client, parseReference(many), out, { maxLayers: 10 }));
    expect(error).toBeInstanceOf(LimitError);
    expect(error.message).toBe(`the artifact ${many} exceeds the limit of 10 layers; raise maxLayers if it is trusted`);
    expect(rogue.requests.some((r) => r.includes('/blobs/') && r.startsWith('GET') && r.includes(digestOf(layers[0].content)))).toBe(false);
  });

  test('an index child whose digest is a path is refused before it reaches a URL', async () => {
    rogue.manifest('rogue/traversal', {
      schemaVersion: 2,
      mediaType: MediaType.OCI_INDEX,
      manifests: [{ mediaType: MediaType.OCI_MANIFEST, digest: '../../../../x?y', size: 10 }],
    }, 'v1');
    const error = await failure(pull(client, parseReference(`${rogue.host}/rogue/traversal:v1`), out));
    expect(error).toBeInstanceOf(InvalidManifestError);
    expect(error).toMatchObject({ field: 'manifests[0].digest' });
    expect(rogue.requests.filter((r) => !r.includes('/rogue/traversal/manifests/v1'))).toEqual([]);
  });

  test('a layer larger than the free space fails with a DiskFullError before anything is downloaded', async () => {
    const content = Buffer.from('tiny');
    const ref = rogue.artifact('rogue/huge', 'v1', [{ content, title: 'huge.bin', declaredSize: 2 ** 52 }]);
    const error = await failure(pull(client, parseReference(ref), out));
    expect(error).toBeInstanceOf(DiskFullError);
    expect(error.message).toMatch(/^no space left for .*\/out: the layers need at least 4096\.0 TiB, and [\d.]+ [KMGT]?i?B are free$/);
    expect(blobRequests(digestOf(content))).toBe(0);
    expect(left()).toEqual([]);
  });
});

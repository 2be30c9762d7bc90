import { spawnSync } from 'child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Readable } from 'stream';
import { gzipSync } from 'zlib';
import { digestOf } from '../../../runtime/oci/digest';
import { Annotation, Descriptor, EMPTY_CONFIG, MediaType } from '../../../runtime/oci/media-types';
import { pull } from '../../../runtime/oci/pull';
import { push } from '../../../runtime/oci/push';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { Distribution } from '../../util/distribution';
import { FaultProxy } from '../../util/fault-proxy';
import { describeWithPeers } from '../../util/peers';
import { useRegistry } from '../../util/use-registry';

interface RawLayer {
  readonly content: Buffer;
  readonly title?: string;
  readonly mediaType?: string;
  readonly annotations?: Record<string, string>;
}

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
  async function pushRaw(tag: string, layers: RawLayer[]): Promise<string> {
    const descriptors: Descriptor[] = [];
    await client.pushBlob('pull/raw', EMPTY_CONFIG, () => Readable.from([Buffer.from('{}')]));
    for (const layer of layers) {
      const descriptor: Descriptor = {
        mediaType: layer.mediaType ?? MediaType.LAYER_TAR,
        digest: digestOf(layer.content),
        size: layer.content.length,
        annotations: { ...layer.annotations, ...(layer.title !== undefined ? { [Annotation.TITLE]: layer.title } : {}) },
      };
      await client.pushBlob('pull/raw', descriptor, () => Readable.from([layer.content]));
      descriptors.push(descriptor);
    }
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaType.OCI_MANIFEST,
      artifactType: MediaType.DEFAULT_ARTIFACT_TYPE,
      config: EMPTY_CONFIG,
      layers: descriptors,
    };
    await client.pushManifest('pull/raw', tag, Buffer.from(JSON.stringify(manifest)), MediaType.OCI_MANIFEST);
    return `${registry.host}/pull/raw:${tag}`;
  }

  /** A tar.gz directory layer made by python's tarfile, which writes any entry name we ask for. */
  function pythonTarGz(entries: { name: string; type: 'file' | 'symlink'; data?: string; target?: string }[]): Buffer {
    const script = `
import io, json, sys, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
    for e in json.loads(sys.argv[1]):
        info = tarfile.TarInfo(e['name'])
        if e['type'] == 'symlink':
            info.type = tarfile.SYMTYPE
            info.linkname = e['target']
            tar.addfile(info)
        else:
            data = e.get('data', '').encode()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
sys.stdout.buffer.write(buf.getvalue())
`;
    const result = spawnSync('python3', ['-c', script, JSON.stringify(entries)]);
    if (result.status !== 0) throw new Error(result.stderr.toString());
    return gzipSync(result.stdout);
  }

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

  test.each([
    ['a ../ entry', [{ name: 'data/../../escaped.txt', type: 'file' as const, data: 'x' }], /escape/],
    ['an absolute entry', [{ name: '/tmp/escaped.txt', type: 'file' as const, data: 'x' }], /escape|outside/],
    ['a symlink out of the tree', [{ name: 'data/link', type: 'symlink' as const, target: '../../outside' }], /escape|outside/],
    ['a write through a symlink', [
      { name: 'data/link', type: 'symlink' as const, target: '.' },
      { name: 'data/link/../../../outside/pwned', type: 'file' as const, data: 'x' },
    ], /escape|outside|symlink/],
  ])('refuses a directory layer with %s; nothing appears under its title', async (_name, entries, message) => {
    const ref = await pushRaw(`tar${entries.length}${entries[0].name.length}`, [{
      content: pythonTarGz(entries), title: 'data', mediaType: MediaType.LAYER_TAR_GZIP, annotations: { [Annotation.UNPACK]: 'true' },
    }]);
    await expect(pull(client, parseReference(ref), out)).rejects.toThrow(message);
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

  test('an existing file and directory are replaced whole, never merged', async () => {
    mkdirSync(join(out, 'tree'), { recursive: true });
    writeFileSync(join(out, 'tree', 'stale.txt'), 'stale');
    writeFileSync(join(out, 'file.txt'), 'old');
    const ref = await pushRaw('replace', [
      { content: Buffer.from('new'), title: 'file.txt' },
      { content: pythonTarGz([{ name: 'tree/fresh.txt', type: 'file', data: 'fresh' }]), title: 'tree', mediaType: MediaType.LAYER_TAR_GZIP, annotations: { [Annotation.UNPACK]: 'true' } },
    ]);
    await pull(client, parseReference(ref), out);
    expect(readFileSync(join(out, 'file.txt'), 'utf8')).toBe('new');
    expect(readdirSync(join(out, 'tree'))).toEqual(['fresh.txt']);
    expect(leftovers(out)).toEqual([]);
  });

  test('a directory layer whose tar does not match io.deis.oras.content.digest is refused', async () => {
    const ref = await pushRaw('contentdigest', [{
      content: pythonTarGz([{ name: 'tree/a.txt', type: 'file', data: 'a' }]),
      title: 'tree',
      mediaType: MediaType.LAYER_TAR_GZIP,
      annotations: { [Annotation.UNPACK]: 'true', [Annotation.CONTENT_DIGEST]: digestOf('something else') },
    }]);
    await expect(pull(client, parseReference(ref), out)).rejects.toThrow(/directory "tree" \(uncompressed tar\): content does not match/);
    expect(existsSync(join(out, 'tree'))).toBe(false);
    expect(leftovers(out)).toEqual([]);
  });

  test('--no-unpack keeps a directory layer as its tarball, named by the title', async () => {
    const tarball = pythonTarGz([{ name: 'tree/a.txt', type: 'file', data: 'a' }]);
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

import { createHash, randomBytes } from 'crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Reporter, SilentReporter } from '../../../runtime/oci/progress';
import { pull } from '../../../runtime/oci/pull';
import { push, UPLOAD_PART } from '../../../runtime/oci/push';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { Distribution } from '../../util/distribution';
import { FaultProxy } from '../../util/fault-proxy';
import { describeWithPeers, requirePeer, run } from '../../util/peers';
import { writePinnedTree } from '../../util/pinned-tree';
import { describeTree } from '../../util/tree';

describeWithPeers(['docker-registry'], 'push: a registry that lost blobs before the manifest arrived', () => {
  let registry: Distribution;
  let scratch: string;
  beforeAll(async () => { registry = await Distribution.start({ env: { REGISTRY_STORAGE_DELETE_ENABLED: 'true' } }); });
  afterAll(async () => registry.stop());
  beforeEach(() => { scratch = mkdtempSync(join(tmpdir(), 'oras-push-')); });
  afterEach(() => rmSync(scratch, { recursive: true, force: true }));

  test('a blob gone between upload and manifest (a garbage collection at a restart) is uploaded again, once', async () => {
    writeFileSync(join(scratch, 'data.txt'), 'survives a collection');
    const reference = parseReference(`${registry.host}/gc/race:v1`);
    const client = new RegistryClient(registry.host, { plainHttp: true, retryBaseMs: 5 });
    const events: string[] = [];
    const reporter: Reporter = { event: (name) => events.push(name), track: () => new SilentReporter().track() };
    // What a collection does to a blob no manifest refers to yet: delete it, just before the manifest is stored.
    const pushManifest = client.pushManifest.bind(client);
    let collected = false;
    client.pushManifest = async (...args: Parameters<RegistryClient['pushManifest']>) => {
      if (!collected) {
        collected = true;
        const manifest = JSON.parse(args[2].toString('utf8'));
        const response = await fetch(`${registry.url}/v2/gc/race/blobs/${manifest.layers[0].digest}`, { method: 'DELETE' });
        expect(response.status).toBe(202);
      }
      return pushManifest(...args);
    };
    try {
      await push(client, reference, [{ path: 'data.txt' }], { cwd: scratch, reporter });
      expect(events.filter((e) => e === 'retrying')).toHaveLength(1);
      expect(events.filter((e) => e === 'uploaded').length).toBeGreaterThanOrEqual(3);
      const out = join(scratch, 'out');
      await pull(client, reference, out);
      expect(readFileSync(join(out, 'data.txt'), 'utf8')).toBe('survives a collection');
    } finally {
      client.close();
    }
  });
});

describeWithPeers(['docker-registry'], 'push: the bytes of a directory layer never change', () => {
  let registry: Distribution;
  let scratch: string;
  beforeAll(async () => { registry = await Distribution.start(); });
  afterAll(async () => registry.stop());
  beforeEach(() => { scratch = mkdtempSync(join(tmpdir(), 'oras-push-')); });
  afterEach(() => rmSync(scratch, { recursive: true, force: true }));

  // Digests of the pinned tree as v0.1 wrote it: existing artifacts and memoization keys depend on them.
  const PINNED = {
    tar: 'sha256:b74d3909389dc5dbea691b1eeb0c505e94a62cd234967171423d1bc83341d60e',
    layer: 'sha256:bd4353db76fcf1eaffe6eb48903805152e82e7f8bc2735bcc8f6f6a70c434a8c',
    size: 3102925,
  };

  test('the pinned tree gives the pinned tar and gzip digests, and pulls back byte for byte', async () => {
    writePinnedTree(join(scratch, 'data'));
    const client = new RegistryClient(registry.host, { plainHttp: true });
    try {
      const reference = parseReference(`${registry.host}/pinned/tree:v1`);
      const { manifest } = await push(client, reference, [{ path: 'data' }], { cwd: scratch });
      expect(manifest.layers?.[0]).toMatchObject({
        digest: PINNED.layer,
        size: PINNED.size,
        annotations: { 'io.deis.oras.content.digest': PINNED.tar },
      });
      const blob = Buffer.from(await (await fetch(`${registry.url}/v2/pinned/tree/blobs/${PINNED.layer}`)).arrayBuffer());
      expect(`sha256:${createHash('sha256').update(blob).digest('hex')}`).toBe(PINNED.layer);
      const out = join(scratch, 'out');
      await pull(client, reference, out);
      expect(describeTree(join(out, 'data'))).toEqual(describeTree(join(scratch, 'data')));
    } finally {
      client.close();
    }
  });
});

describeWithPeers(['docker-registry', 'oras'], 'push: a large directory layer is uploaded in parts while it is packed', () => {
  let registry: Distribution;
  let proxy: FaultProxy;
  let scratch: string;
  let client: RegistryClient;
  let events: Array<{ name: string; fields: Record<string, unknown> }>;
  const reporter: Reporter = { event: (name, fields = {}) => events.push({ name, fields }), track: () => new SilentReporter().track() };
  beforeAll(async () => {
    registry = await Distribution.start();
    proxy = await FaultProxy.start(registry.host);
  });
  afterAll(async () => {
    await proxy.stop();
    await registry.stop();
  });
  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), 'oras-push-'));
    // 20 MiB that gzip cannot shrink: two whole parts, and a rest that goes with the closing PUT.
    mkdirSync(join(scratch, 'data', 'sub'), { recursive: true });
    for (let i = 0; i < 5; i++) writeFileSync(join(scratch, 'data', i % 2 ? 'sub' : '.', `f${i}.bin`), randomBytes(4 * 1024 * 1024));
    client = new RegistryClient(proxy.host, { plainHttp: true, retryBaseMs: 5 });
    events = [];
    proxy.requests.length = 0;
    proxy.rule = () => undefined;
  });
  afterEach(() => {
    client.close();
    rmSync(scratch, { recursive: true, force: true });
  });
  const uploads = (method: string) => proxy.requests.filter((r) => r.method === method && r.path.includes('/blobs/uploads/'));

  test('the parts go while gzip writes, the closing PUT names the digest, and oras and we pull the tree back', async () => {
    const reference = parseReference(`${proxy.host}/parts/tree:v1`);
    const { manifest } = await push(client, reference, [{ path: 'data' }], { cwd: scratch, reporter });
    const layer = manifest.layers![0];
    expect(layer.size).toBeGreaterThan(2 * UPLOAD_PART);
    expect(uploads('PATCH')).toHaveLength(Math.floor(layer.size / UPLOAD_PART));
    expect(uploads('PUT').filter((r) => r.path.includes(layer.digest.replace(':', '%3A')))).toHaveLength(1);
    // No HEAD: the digest is known only once the parts are on their way.
    expect(proxy.requests.filter((r) => r.method === 'HEAD' && r.path.endsWith(layer.digest))).toEqual([]);
    expect(events.filter((e) => e.name === 'retrying')).toEqual([]);

    const ours = join(scratch, 'ours');
    await pull(client, reference, ours);
    expect(describeTree(join(ours, 'data'))).toEqual(describeTree(join(scratch, 'data')));
    const theirs = join(scratch, 'theirs');
    const result = run(requirePeer('oras'), ['pull', '--plain-http', `${registry.host}/parts/tree:v1`, '-o', theirs]);
    expect(result.status).toBe(0);
    expect(describeTree(join(theirs, 'data'))).toEqual(describeTree(join(scratch, 'data')));
  });

  test.each([
    ['refuses PATCH (405)', (count: number) => (count === 0 ? 405 : undefined)],
    ['fails the second part (500)', (count: number) => (count === 1 ? 500 : undefined)],
  ])('a registry that %s gets the layer whole, after a HEAD, and says why', async (_what, statusFor) => {
    let patches = 0;
    proxy.rule = (method) => {
      if (method !== 'PATCH') return undefined;
      const status = statusFor(patches++);
      return status ? { kind: 'status', status } : undefined;
    };
    const reference = parseReference(`${proxy.host}/parts/fallback:v1`);
    const { manifest } = await push(client, reference, [{ path: 'data' }], { cwd: scratch, reporter });
    const layer = manifest.layers![0];
    const retrying = events.filter((e) => e.name === 'retrying');
    expect(retrying).toHaveLength(1);
    expect(retrying[0].fields.message).toMatch(/^the upload in parts failed \(.*\); pushing the layer whole$/);
    expect(proxy.requests.filter((r) => r.method === 'HEAD' && r.path.endsWith(layer.digest))).toHaveLength(1);
    const out = join(scratch, 'out');
    await pull(client, reference, out);
    expect(describeTree(join(out, 'data'))).toEqual(describeTree(join(scratch, 'data')));
  });
});

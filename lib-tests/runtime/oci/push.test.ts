import { createHash } from 'crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Reporter, SilentReporter } from '../../../runtime/oci/progress';
import { pull } from '../../../runtime/oci/pull';
import { push } from '../../../runtime/oci/push';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { Distribution } from '../../util/distribution';
import { describeWithPeers } from '../../util/peers';
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

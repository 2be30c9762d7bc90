import { InvalidReferenceError, RegistryError, TimeoutError } from '../../../runtime/oci/errors';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { isTransient } from '../../../runtime/oci/retry';
import { Distribution } from '../../util/distribution';
import { describeWithPeers } from '../../util/peers';
import { RogueRegistry } from '../../util/rogue-registry';

describe('RegistryClient against a registry that misbehaves', () => {
  let rogue: RogueRegistry;
  let client: RegistryClient;
  beforeAll(async () => { rogue = await RogueRegistry.start(); });
  afterAll(async () => rogue.stop());
  beforeEach(() => {
    client = new RegistryClient(rogue.host, { plainHttp: true, retryBaseMs: 5 });
    rogue.requests.length = 0;
  });
  afterEach(() => client.close());

  test.each([
    ['a manifest', (c: RegistryClient) => c.fetchManifest('repo', '../../../../x?y'), 'manifest of repo: "../../../../x?y" is not a tag or a sha256/sha512 digest'],
    ['a blob', (c: RegistryClient) => c.fetchBlob('repo', 'sha256:../../x'), 'blob of repo: "sha256:../../x" is not a sha256 or sha512 digest'],
    ['a short digest', (c: RegistryClient) => c.hasBlob('repo', 'sha256:abc'), 'blob of repo: "sha256:abc" is not a sha256 or sha512 digest'],
    ['a repository', (c: RegistryClient) => c.resolve('../v2/other', 'v1'), `registry ${'${host}'}: "../v2/other" is not a repository name`],
  ])('%s named by a path is refused before any request', async (_what, call, message) => {
    const error = await call(client).then(() => undefined, (err: Error) => err);
    expect(error).toBeInstanceOf(InvalidReferenceError);
    expect(error?.message).toBe(message.replace('${host}', rogue.host));
    expect(rogue.requests).toEqual([]);
  });

  test('resolve with timeoutMs cuts a request that hangs short', async () => {
    rogue.manifest('hang', { schemaVersion: 2 }, 'v1', { kind: 'hang' });
    const started = Date.now();
    const error = await client.resolve('hang', 'v1', { timeoutMs: 300 }).then(() => undefined, (err: Error) => err);
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error?.message).toBe(`resolving ${rogue.host}/hang:v1 timed out after 0.3 s`);
    expect(Date.now() - started).toBeLessThan(1500);
  });
});

describeWithPeers(['docker-registry'], 'RegistryClient: the registry\'s error codes, as values', () => {
  let registry: Distribution;
  beforeAll(async () => { registry = await Distribution.start(); });
  afterAll(async () => registry.stop());

  test('an answer with several errors keeps every code; code is the first, status and URL are kept', async () => {
    const client = new RegistryClient(registry.host, { plainHttp: true });
    const missing = (n: number) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${String(n).repeat(64)}`, size: 1 });
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: missing(1),
      layers: [missing(2), missing(3)],
    }));
    try {
      const error = await client.pushManifest('codes/repo', 'v1', manifest, 'application/vnd.oci.image.manifest.v1+json').then(() => undefined, (err: Error) => err);
      expect(error).toBeInstanceOf(RegistryError);
      const registryError = error as RegistryError;
      expect(registryError.status).toBe(400);
      expect(registryError.code).toBe('MANIFEST_BLOB_UNKNOWN');
      expect(registryError.codes.length).toBeGreaterThanOrEqual(2);
      expect(new Set(registryError.codes)).toEqual(new Set(['MANIFEST_BLOB_UNKNOWN']));
      expect(registryError.url.pathname).toBe('/v2/codes/repo/manifests/v1');
      expect(isTransient(registryError)).toBe(false);
    } finally {
      client.close();
    }
  });
});

import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { pull } from '../../../runtime/oci/pull';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { Distribution } from '../../util/distribution';
import { FixtureStorage, fixtureLayout, fixtureStorageRoot, listStorageTags, removeFixtureStorageRoot, seedFromOciLayout } from '../../util/fixtures';
import { describeWithPeers, requirePeer, run } from '../../util/peers';
import { describeTree } from '../../util/tree';

/** Tags of an OCI layout's index.json. */
function layoutTags(layout: string): string[] {
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  return index.manifests.map((m: any) => m.annotations?.['org.opencontainers.image.ref.name']).filter(Boolean).sort();
}

/**
 * Pulls one tag with our client and with the real oras CLI. Both must agree:
 * the same files with the same bytes, or both refuse.
 */
async function expectSameAsOras(host: string, reference: string): Promise<number> {
  const scratch = mkdtempSync(join(tmpdir(), 'oras-fixture-'));
  const client = new RegistryClient(host, { plainHttp: true });
  try {
    const theirs = run(requirePeer('oras'), ['pull', '--plain-http', reference, '-o', join(scratch, 'theirs')]);
    const ours = await pull(client, parseReference(reference), join(scratch, 'ours')).then(() => undefined, (err: Error) => err);
    if (theirs.status !== 0) {
      expect({ reference, ours: ours?.message }).toEqual({ reference, ours: expect.any(String) });
      return 0;
    }
    expect({ reference, error: ours?.message }).toEqual({ reference, error: undefined });
    // oras creates no output directory for an artifact without titled layers.
    const treeOf = (dir: string) => existsSync(dir) ? describeTree(dir) : {};
    const expected = treeOf(join(scratch, 'theirs'));
    expect({ reference, tree: treeOf(join(scratch, 'ours')) }).toEqual({ reference, tree: expected });
    for (const [path, entry] of Object.entries(expected)) {
      if (entry.startsWith('file:')) expect(readFileSync(join(scratch, 'ours', path)).equals(readFileSync(join(scratch, 'theirs', path)))).toBe(true);
    }
    return Object.keys(expected).length;
  } finally {
    client.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

describeWithPeers(['docker-registry', 'oras', 'skopeo'], 'artifacts the real oras CLI produced (shared/fixtures/oras-e2e)', () => {
  test.each<FixtureStorage>(['artifacts', 'artifacts_index', 'images'])('every tag of the distribution storage root %s pulls like oras pull', async (name) => {
    const root = fixtureStorageRoot(name);
    const registry = await Distribution.start({ storageRoot: root });
    try {
      const tags = listStorageTags(root);
      expect(tags.length).toBeGreaterThan(0);
      let files = 0;
      for (const { repository, tag } of tags) files += await expectSameAsOras(registry.host, `${registry.host}/${repository}:${tag}`);
      expect(files).toBeGreaterThan(0);
    } finally {
      await registry.stop();
      removeFixtureStorageRoot(root);
    }
  });

  test.each(['artifacts', 'images'] as const)('every tag of the OCI layout zot/command/%s, seeded with skopeo, pulls like oras pull', async (name) => {
    const registry = await Distribution.start();
    try {
      const layout = fixtureLayout(name);
      const tags = layoutTags(layout);
      expect(tags.length).toBeGreaterThan(3);
      for (const tag of tags) await seedFromOciLayout(layout, tag, { host: registry.host }, `fixtures/${name}`);
      let files = 0;
      for (const tag of tags) files += await expectSameAsOras(registry.host, `${registry.host}/fixtures/${name}:${tag}`);
      expect(files).toBeGreaterThan(0);
    } finally {
      await registry.stop();
    }
  });

  test('the foobar artifact gives the exact bytes of its blobs', async () => {
    const registry = await Distribution.start();
    const scratch = mkdtempSync(join(tmpdir(), 'oras-fixture-'));
    const client = new RegistryClient(registry.host, { plainHttp: true });
    try {
      await seedFromOciLayout(fixtureLayout('artifacts'), 'foobar', { host: registry.host }, 'fixtures/foobar');
      await pull(client, parseReference(`${registry.host}/fixtures/foobar:foobar`), scratch);
      expect(readdirSync(scratch).sort()).toEqual(['bar', 'foo1', 'foo2']);
      expect(readFileSync(join(scratch, 'foo1'), 'utf8')).toBe('foo');
      expect(readFileSync(join(scratch, 'foo2'), 'utf8')).toBe('foo');
      expect(readFileSync(join(scratch, 'bar'), 'utf8')).toBe('bar');
    } finally {
      client.close();
      await registry.stop();
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});

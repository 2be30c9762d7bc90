import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { gzipSync } from 'zlib';
import { PathEscapeError } from '../../../runtime/oci/errors';
import { pull } from '../../../runtime/oci/pull';
import { push } from '../../../runtime/oci/push';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { craftTar, laterSymlinkEscape } from '../../util/crafted-tar';
import { Distribution } from '../../util/distribution';
import { describeWithPeers, requirePeer, run } from '../../util/peers';
import { pushRawArtifact } from '../../util/raw-artifact';
import { buildTree, describeTree } from '../../util/tree';
import { useRegistry } from '../../util/use-registry';

describeWithPeers(['docker-registry', 'oras'], 'interop with the real oras CLI v1.2.3', () => {
  let registry: Distribution;
  let client: RegistryClient;
  let scratch: string;
  const oras = (...args: string[]) => run(requirePeer('oras'), args, { cwd: join(scratch, 'src') });
  /**
   * The source tree limited to the pushed items. A file layer is a raw blob
   * with no mode in the ORAS layout, so top-level files come back 0644 (the
   * oras CLI does the same: see the parity test); inside directories the tar
   * keeps exec bits.
   */
  const expectedTree = (items: string[]) => Object.fromEntries(Object.entries(describeTree(join(scratch, 'src')))
    .filter(([path]) => items.some((item) => path === item || path.startsWith(item + '/')))
    .map(([path, entry]) => [path, items.includes(path) ? entry.replace(/^file:755:/, 'file:644:') : entry]));

  const under = useRegistry();
  beforeAll(() => {
    ({ registry, client } = under);
  });
  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), 'oras-interop-'));
    buildTree(join(scratch, 'src'));
  });
  afterEach(() => rmSync(scratch, { recursive: true, force: true }));

  const cases: [string, (tree: { files: string[]; dirs: string[] }) => string[]][] = [
    ['a single file', () => ['hello.txt']],
    ['several files, an empty one, an executable and a unicode name', (t) => t.files],
    ['a directory with nested folders, symlinks, unicode, empty files and exec bits', (t) => t.dirs],
    ['files and a directory together', (t) => [...t.files, ...t.dirs]],
  ];

  test.each(cases)('what we push, oras pull restores identically: %s', async (name, pick) => {
    const items = pick(buildTree(join(scratch, 'shape')));
    const ref = parseReference(`${registry.host}/interop/ours:${cases.findIndex((c) => c[0] === name)}`);
    const pushed = await push(client, ref, items.map((path) => ({ path })), { cwd: join(scratch, 'src') });
    const result = oras('pull', '--plain-http', ref.text, '-o', join(scratch, 'out'));
    expect(result.output).toContain(`Digest: ${pushed.digest}`);
    expect(result.status).toBe(0);
    expect(describeTree(join(scratch, 'out'))).toEqual(expectedTree(items));
  });

  test.each(cases)('what oras push writes, we pull identically: %s', async (name, pick) => {
    const items = pick(buildTree(join(scratch, 'shape')));
    const ref = parseReference(`${registry.host}/interop/theirs:${cases.findIndex((c) => c[0] === name)}`);
    const result = oras('push', '--plain-http', ref.text, ...items);
    expect(result.status).toBe(0);
    const pulled = await pull(client, ref, join(scratch, 'out'));
    expect(result.output).toContain(`Digest: ${pulled.digest}`);
    expect(describeTree(join(scratch, 'out'))).toEqual(expectedTree(items));
  });

  test('parity: oras itself restores a top-level executable file as 0644', () => {
    const ref = `${registry.host}/interop/parity:v1`;
    expect(oras('push', '--plain-http', ref, 'run.sh').status).toBe(0);
    expect(oras('pull', '--plain-http', ref, '-o', join(scratch, 'out')).status).toBe(0);
    expect(describeTree(join(scratch, 'out'))['run.sh']).toMatch(/^file:644:/);
  });

  test('oras reads our manifest as the ORAS layout: empty config, artifactType, titles, unpack annotations', async () => {
    const ref = parseReference(`${registry.host}/interop/layout:v1`);
    await push(client, ref, [{ path: 'hello.txt' }, { path: 'data' }], { cwd: join(scratch, 'src'), artifactType: 'application/vnd.example.data' });
    const fetched = JSON.parse(oras('manifest', 'fetch', '--plain-http', ref.text).stdout);
    expect(fetched.artifactType).toBe('application/vnd.example.data');
    expect(fetched.config).toEqual({
      mediaType: 'application/vnd.oci.empty.v1+json',
      digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
      size: 2,
      data: 'e30=',
    });
    expect(fetched.annotations['org.opencontainers.image.created']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(fetched.layers[0]).toMatchObject({ mediaType: 'application/vnd.oci.image.layer.v1.tar', annotations: { 'org.opencontainers.image.title': 'hello.txt' } });
    expect(fetched.layers[1]).toMatchObject({
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      annotations: { 'org.opencontainers.image.title': 'data', 'io.deis.oras.content.unpack': 'true' },
    });
    expect(fetched.layers[1].annotations['io.deis.oras.content.digest']).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  test('a directory layer merges into an existing directory as oras pull does: the layer\'s files replace, the others stay', async () => {
    const ref = parseReference(`${registry.host}/interop/merge:v1`);
    await push(client, ref, [{ path: 'data' }], { cwd: join(scratch, 'src') });
    const prepare = (out: string) => {
      mkdirSync(join(out, 'data', 'nested'), { recursive: true });
      writeFileSync(join(out, 'data', 'mine.txt'), 'mine');
      writeFileSync(join(out, 'data', 'nested', 'mine.txt'), 'mine too');
      writeFileSync(join(out, 'data', 'a.txt'), 'stale');
      return out;
    };
    expect(oras('pull', '--plain-http', ref.text, '-o', prepare(join(scratch, 'theirs'))).status).toBe(0);
    await pull(client, ref, prepare(join(scratch, 'ours')));
    expect(describeTree(join(scratch, 'ours'))).toEqual(describeTree(join(scratch, 'theirs')));
    expect(readFileSync(join(scratch, 'ours', 'data', 'mine.txt'), 'utf8')).toBe('mine');
    expect(readFileSync(join(scratch, 'ours', 'data', 'a.txt'), 'utf8')).toBe('a\n');
  });

  test('a symlink that a later entry makes lead outside: oras pull refuses the artifact, and so do we', async () => {
    const ref = await pushRawArtifact(client, `${registry.host}/interop/later-link:v1`, [{
      content: gzipSync(craftTar(laterSymlinkEscape('data'))),
      title: 'data',
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      annotations: { 'io.deis.oras.content.unpack': 'true' },
    }]);
    const theirs = oras('pull', '--plain-http', ref, '-o', join(scratch, 'theirs'));
    expect(theirs.status).not.toBe(0);
    expect(theirs.output).toContain('"/etc/passwd" is outside of "data"');
    await expect(pull(client, parseReference(ref), join(scratch, 'ours'))).rejects.toBeInstanceOf(PathEscapeError);
    expect(existsSync(join(scratch, 'ours'))).toBe(false);
  });

  test('the oras annotation file format is understood the same way', async () => {
    const annotations = { '$manifest': { 'com.example.run': '42' }, '$config': { 'com.example.cfg': 'c' }, 'hello.txt': { 'com.example.kind': 'greeting' } };
    const ref = parseReference(`${registry.host}/interop/annotated:v1`);
    await push(client, ref, [{ path: 'hello.txt' }], { cwd: join(scratch, 'src'), annotations });
    const fetched = JSON.parse(oras('manifest', 'fetch', '--plain-http', ref.text).stdout);
    expect(fetched.annotations['com.example.run']).toBe('42');
    expect(fetched.config.annotations).toEqual({ 'com.example.cfg': 'c' });
    expect(fetched.layers[0].annotations).toEqual({ 'com.example.kind': 'greeting', 'org.opencontainers.image.title': 'hello.txt' });
  });
});

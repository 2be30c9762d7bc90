import { ChildProcess, spawn } from 'child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import * as grpc from '@grpc/grpc-js';
import { IdentityService, NodeService } from '../../../runtime/csi/protocol';
import { EnvironmentCredentials } from '../../../runtime/oci/auth/credentials';
import { push } from '../../../runtime/oci/push';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { Distribution, freePort } from '../../util/distribution';
import { FaultProxy } from '../../util/fault-proxy';
import { request } from '../../util/http';
import { describeWithPeers, run } from '../../util/peers';

const root = join(__dirname, '..', '..', '..');
const bundle = join(root, 'runtime', 'build', 'oras-runtime.cjs');
const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
const asRoot = process.getuid?.() === 0;
/** Bind mounts need root: under CI a non-root run fails, elsewhere it is skipped. */
function describeAsRoot(title: string, peers: string[], body: () => void): void {
  if (asRoot || process.env.CI === 'true') {
    describeWithPeers(peers, title, asRoot ? body : () => test('runs as root', () => { throw new Error('the CSI tests mount: run them as root'); }));
  } else {
    describe.skip(title, body);
  }
}

/** The plugin process: our bundle serving CSI on a unix socket. */
class Plugin {
  public static async start(dir: string, extra: string[] = []): Promise<Plugin> {
    const socket = join(dir, 'csi.sock');
    const metricsPort = await freePort();
    const child = spawn(process.execPath, [bundle, 'csi', '--endpoint', `unix://${socket}`, '--node-id', 'node-1', '--cache-dir', join(dir, 'data'),
      '--metrics-port', String(metricsPort), ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    const plugin = new Plugin(child, socket, metricsPort);
    for (let i = 0; i < 200 && !plugin.log.includes('"event":"listening"'); i++) await new Promise((r) => setTimeout(r, 25));
    if (!plugin.log.includes('"event":"listening"')) throw new Error(`the plugin did not start: ${plugin.log}`);
    return plugin;
  }

  public log = '';
  private readonly identity: grpc.Client;
  private readonly node: grpc.Client;
  private constructor(public readonly child: ChildProcess, socket: string, public readonly metricsPort: number) {
    child.stdout!.on('data', (d) => { this.log += d; });
    child.stderr!.on('data', (d) => { this.log += d; });
    const Identity = grpc.makeGenericClientConstructor(IdentityService, 'Identity');
    const Node = grpc.makeGenericClientConstructor(NodeService, 'Node');
    this.identity = new Identity(`unix://${socket}`, grpc.credentials.createInsecure());
    this.node = new Node(`unix://${socket}`, grpc.credentials.createInsecure());
  }

  public call(service: 'identity' | 'node', method: string, body: object = {}): Promise<any> {
    const client = (service === 'identity' ? this.identity : this.node) as any;
    return new Promise((resolve, reject) => client[method](body, (err: grpc.ServiceError | null, res: any) => (err ? reject(err) : resolve(res))));
  }

  public async metric(name: string): Promise<number> {
    const text = (await request(`http://127.0.0.1:${this.metricsPort}/metrics`)).body.toString();
    return Number(new RegExp(`^${name} (\\d+(\\.\\d+)?)$`, 'm').exec(text)?.[1] ?? NaN);
  }

  public async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill(signal);
    await exited;
    this.identity.close();
    this.node.close();
  }
}

const capability = { mount: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } };

describeAsRoot('the CSI node plugin over its unix socket, with real bind mounts', ['docker-registry', 'mount'], () => {
  let registry: Distribution;
  let client: RegistryClient;
  let dir: string;
  let plugin: Plugin;
  let src: string;

  beforeAll(async () => {
    registry = await Distribution.start();
    client = new RegistryClient(registry.host, { plainHttp: true });
  });
  afterAll(async () => {
    client.close();
    await registry.stop();
  });
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'oras-csi-'));
    src = join(dir, 'src');
    mkdirSync(join(src, 'model'), { recursive: true });
    plugin = await Plugin.start(dir);
  });
  afterEach(async () => {
    await plugin.stop();
    run('sh', ['-c', `grep -o '${dir}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount`]);
    rmSync(dir, { recursive: true, force: true });
  });

  async function publishArtifact(tag: string, files: Record<string, string>, options: { repository?: string } = {}): Promise<string> {
    for (const [name, content] of Object.entries(files)) writeFileSync(join(src, name), content);
    const ref = parseReference(`${registry.host}/${options.repository ?? 'csi/models'}:${tag}`);
    await push(client, ref, Object.keys(files).map((path) => ({ path })), { cwd: src });
    return ref.text;
  }

  const publish = (target: string, context: Record<string, string>, extra: object = {}) =>
    plugin.call('node', 'NodePublishVolume', { volume_id: `vol-${target.length}`, target_path: target, volume_capability: capability, readonly: true, volume_context: context, ...extra });

  test('identity: the driver name, the package version, no controller; probe is ready', async () => {
    expect(await plugin.call('identity', 'GetPluginInfo')).toEqual({ name: 'csi.oras.land', vendor_version: version, manifest: {} });
    expect(await plugin.call('identity', 'GetPluginCapabilities')).toEqual({ capabilities: [] });
    expect(await plugin.call('identity', 'Probe')).toEqual({ ready: { value: true } });
    expect(await plugin.call('node', 'NodeGetInfo')).toMatchObject({ node_id: 'node-1' });
    expect(await plugin.call('node', 'NodeGetCapabilities')).toEqual({ capabilities: [{ type: 'rpc', rpc: { type: 'GET_VOLUME_STATS' } }] });
  });

  test('the prototype\'s attributes: a read-only mount of the artifact; unpublish removes the target', async () => {
    const ref = await publishArtifact('v1', { 'weights.bin': 'w1', 'notes.txt': 'n1' });
    const target = join(dir, 'pods', 'p1', 'volume');
    await publish(target, {
      'oras.artifact.reference': ref,
      'oras.options.plainhttp': 'true',
      'oras.options.concurrency': '2',
      'oras.artifact.layers.mediatype': 'application/vnd.oci.image.layer.v1.tar',
      'oras.options.pullalways': 'false',
    });
    expect(readdirSync(target).sort()).toEqual(['notes.txt', 'weights.bin']);
    expect(readFileSync(join(target, 'weights.bin'), 'utf8')).toBe('w1');
    expect(() => writeFileSync(join(target, 'new.txt'), 'x')).toThrow(/EROFS|read-only/);
    await plugin.call('node', 'NodeUnpublishVolume', { volume_id: 'vol', target_path: target });
    expect(existsSync(target)).toBe(false);
    // Idempotent.
    await plugin.call('node', 'NodeUnpublishVolume', { volume_id: 'vol', target_path: target });
  });

  test('a second publish of the same artifact hits the cache; a moved tag brings new content', async () => {
    const ref = await publishArtifact('moving', { 'data.txt': 'first' });
    const context = { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true' };
    await publish(join(dir, 't1'), context);
    await publish(join(dir, 't2'), context);
    expect(await plugin.metric('oras_csi_pulls_total')).toBe(1);
    expect(await plugin.metric('oras_csi_cache_hits_total')).toBe(1);
    // Publishing again to the same target is idempotent.
    await publish(join(dir, 't1'), context);

    await publishArtifact('moving', { 'data.txt': 'second' });
    await publish(join(dir, 't3'), context);
    expect(readFileSync(join(dir, 't3', 'data.txt'), 'utf8')).toBe('second');
    expect(readFileSync(join(dir, 't1', 'data.txt'), 'utf8')).toBe('first');
    expect(await plugin.metric('oras_csi_pulls_total')).toBe(2);
  });

  test('volume stats of a published volume; unknown volumes are NOT_FOUND', async () => {
    const ref = await publishArtifact('stats', { 's.txt': 'stats' });
    const target = join(dir, 'stats');
    await plugin.call('node', 'NodePublishVolume', { volume_id: 'vol-stats', target_path: target, volume_capability: capability, volume_context: { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true' } });
    const stats = await plugin.call('node', 'NodeGetVolumeStats', { volume_id: 'vol-stats', volume_path: target });
    expect(stats.usage.map((u: any) => u.unit)).toEqual(['BYTES', 'INODES']);
    expect(stats.usage[0].total).toBeGreaterThan(0);
    await expect(plugin.call('node', 'NodeGetVolumeStats', { volume_id: 'other', volume_path: target })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await expect(plugin.call('node', 'NodeGetVolumeStats', { volume_id: '', volume_path: target })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });

  test('publish is idempotent: after the mount vanished (a reboot) and after the tag moved', async () => {
    const ref = await publishArtifact('idem', { 'i.txt': 'one' });
    const target = join(dir, 'idem');
    const publishRequest = { volume_id: 'vol-idem', target_path: target, volume_capability: capability, volume_context: { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true' } };
    await plugin.call('node', 'NodePublishVolume', publishRequest);
    await publishArtifact('idem', { 'i.txt': 'two' });
    await plugin.call('node', 'NodePublishVolume', publishRequest);
    expect(readFileSync(join(target, 'i.txt'), 'utf8')).toBe('one');
    expect(run('umount', [target]).status).toBe(0);
    await plugin.call('node', 'NodePublishVolume', publishRequest);
    expect(readFileSync(join(target, 'i.txt'), 'utf8')).toBe('two');
    await expect(plugin.call('node', 'NodePublishVolume', { ...publishRequest, volume_id: 'other' })).rejects.toMatchObject({ code: grpc.status.ALREADY_EXISTS });
  });

  test('pull policy Never with an empty cache says what to do', async () => {
    const ref = await publishArtifact('never', { 'a.txt': 'a' });
    await expect(publish(join(dir, 't'), { 'oras.artifact.reference': ref, 'oras.options.pullpolicy': 'Never' }))
      .rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringMatching(/pull policy Never: .* is not in this node's cache\. Pull it once with IfNotPresent/) });
  });

  test.each([
    [{ volume_id: '' }, grpc.status.INVALID_ARGUMENT, /volume_id is required/],
    [{ target_path: '' }, grpc.status.INVALID_ARGUMENT, /target_path is required/],
    [{ volume_capability: null }, grpc.status.INVALID_ARGUMENT, /volume_capability is required/],
    [{ volume_capability: { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } } }, grpc.status.INVALID_ARGUMENT, /block access is not supported/],
    [{ volume_context: {} }, grpc.status.INVALID_ARGUMENT, /oras\.artifact\.reference is required/],
    [{ volume_context: { 'oras.artifact.reference': 'Bad/Ref:1' } }, grpc.status.INVALID_ARGUMENT, /Invalid artifact reference/],
    [{ volume_context: { 'oras.artifact.reference': 'r.io/a:b', 'oras.options.concurrency': '0' } }, grpc.status.INVALID_ARGUMENT, /concurrency must be a positive integer/],
    [{ volume_context: { 'oras.artifact.reference': 'r.io/a:b', 'oras.options.pullpolicy': 'Sometimes' } }, grpc.status.INVALID_ARGUMENT, /must be Always, IfNotPresent or Never/],
  ])('publish refuses %j', async (override, code, message) => {
    const body = { volume_id: 'v', target_path: join(dir, 'x'), volume_capability: capability, volume_context: { 'oras.artifact.reference': `${registry.host}/a/b:c` }, ...override };
    await expect(plugin.call('node', 'NodePublishVolume', body)).rejects.toMatchObject({ code, details: expect.stringMatching(message) });
  });

  test('a missing artifact is NOT_FOUND', async () => {
    await expect(publish(join(dir, 't'), { 'oras.artifact.reference': `${registry.host}/csi/none:v1`, 'oras.options.plainhttp': 'true' }))
      .rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  test('20 parallel publishes of one artifact cause exactly one download', async () => {
    const ref = await publishArtifact('parallel', { 'big.bin': 'x'.repeat(2_000_000) });
    const proxy = await FaultProxy.start(registry.host);
    try {
      const proxied = ref.replace(registry.host, proxy.host);
      await Promise.all(Array.from({ length: 20 }, (_, i) => publish(join(dir, `par-${i}`), { 'oras.artifact.reference': proxied, 'oras.options.plainhttp': 'true' })));
      const blobGets = proxy.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
      expect(blobGets).toHaveLength(1);
      expect(await plugin.metric('oras_csi_pulls_total')).toBe(1);
      for (let i = 0; i < 20; i++) expect(readFileSync(join(dir, `par-${i}`, 'big.bin')).length).toBe(2_000_000);
    } finally {
      await proxy.stop();
    }
  });

  test('a plugin killed during a pull: after restart no partial entry is served, and earlier mounts can be unpublished', async () => {
    const early = await publishArtifact('early', { 'e.txt': 'early' });
    await publish(join(dir, 'early'), { 'oras.artifact.reference': early, 'oras.options.plainhttp': 'true' });
    const slow = await publishArtifact('slow', { 'big.bin': 'y'.repeat(3_000_000) });
    const proxy = await FaultProxy.start(registry.host, (method, path) => (path.includes('/blobs/') && method === 'GET' ? { kind: 'slow', bytesPerSecond: 1_000_000 } : undefined));
    try {
      const attempt = publish(join(dir, 'slow'), { 'oras.artifact.reference': slow.replace(registry.host, proxy.host), 'oras.options.plainhttp': 'true' }).catch((e) => e);
      await new Promise((r) => setTimeout(r, 800));
      await plugin.stop('SIGKILL');
      await attempt;
    } finally {
      await proxy.stop();
    }
    expect(readdirSync(join(dir, 'data', 'cache', 'tmp')).length).toBeGreaterThan(0);
    plugin = await Plugin.start(dir);
    expect(readdirSync(join(dir, 'data', 'cache', 'tmp'))).toEqual([]);
    expect(readFileSync(join(dir, 'early', 'e.txt'), 'utf8')).toBe('early');
    await publish(join(dir, 'slow2'), { 'oras.artifact.reference': slow, 'oras.options.plainhttp': 'true' });
    expect(readFileSync(join(dir, 'slow2', 'big.bin')).length).toBe(3_000_000);
    await plugin.call('node', 'NodeUnpublishVolume', { volume_id: 'x', target_path: join(dir, 'early') });
    expect(existsSync(join(dir, 'early'))).toBe(false);
  });

  test('unused entries are collected, least recently used first, above the size cap', async () => {
    await plugin.stop();
    plugin = await Plugin.start(dir, ['--cache-max-size', '3Mi']);
    const context = (ref: string) => ({ 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true' });
    const a = await publishArtifact('gc-a', { 'a.bin': 'a'.repeat(2_000_000) });
    const b = await publishArtifact('gc-b', { 'b.bin': 'b'.repeat(2_000_000) });
    await publish(join(dir, 'ga'), context(a));
    await publish(join(dir, 'gb'), context(b));
    const entries = () => readdirSync(join(dir, 'data', 'cache', 'content')).length;
    // Both are in use: nothing may go, even above the cap.
    await plugin.call('node', 'NodeUnpublishVolume', { volume_id: 'x', target_path: join(dir, 'missing') });
    expect(entries()).toBe(2);
    await plugin.call('node', 'NodeUnpublishVolume', { volume_id: 'x', target_path: join(dir, 'ga') });
    expect(entries()).toBe(1);
    expect(readFileSync(join(dir, 'gb', 'b.bin')).length).toBe(2_000_000);
  });

  test('namespaces do not share cache entries by default', async () => {
    const ref = await publishArtifact('ns', { 'n.txt': 'n' });
    await publish(join(dir, 'a'), { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true', 'csi.storage.k8s.io/pod.namespace': 'team-a' });
    await publish(join(dir, 'b'), { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true', 'csi.storage.k8s.io/pod.namespace': 'team-b' });
    expect(await plugin.metric('oras_csi_pulls_total')).toBe(2);
  });
});

describeAsRoot('the CSI node plugin and private artifacts', ['docker-registry', 'htpasswd', 'mount'], () => {
  test('a cached private artifact is served only after the pod\'s credentials are checked', async () => {
    const registry = await Distribution.start({ htpasswd: { users: { reader: 'reader-secret' } } });
    const dir = mkdtempSync(join(tmpdir(), 'oras-csi-'));
    const plugin = await Plugin.start(dir);
    const client = new RegistryClient(registry.host, { plainHttp: true, credentials: new EnvironmentCredentials({ ORAS_USER: 'reader', ORAS_PASS: 'reader-secret' }) });
    try {
      mkdirSync(join(dir, 'src'));
      writeFileSync(join(dir, 'src', 'secret.txt'), 'classified');
      const ref = parseReference(`${registry.host}/private/data:v1`);
      await push(client, ref, [{ path: 'secret.txt' }], { cwd: join(dir, 'src') });
      const dockerconfig = JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from('reader:reader-secret').toString('base64') } } });
      const body = (target: string, secrets: Record<string, string>) => ({
        volume_id: 'v',
        target_path: join(dir, target),
        volume_capability: capability,
        secrets,
        volume_context: { 'oras.artifact.reference': ref.text, 'oras.options.plainhttp': 'true' },
      });
      await plugin.call('node', 'NodePublishVolume', body('with', { '.dockerconfigjson': dockerconfig }));
      expect(readFileSync(join(dir, 'with', 'secret.txt'), 'utf8')).toBe('classified');
      await expect(plugin.call('node', 'NodePublishVolume', body('without', {})))
        .rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(/refused this pod's credentials.*nodePublishSecretRef/) });
      expect(existsSync(join(dir, 'without', 'secret.txt'))).toBe(false);
      // By digest too: the cached tree is not served without the check.
      const digest = (await client.resolve(ref.repository, ref.manifestReference)).digest;
      const byDigest = { ...body('by-digest', {}), volume_context: { 'oras.artifact.reference': `${registry.host}/private/data@${digest}`, 'oras.options.plainhttp': 'true' } };
      await expect(plugin.call('node', 'NodePublishVolume', byDigest)).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
      await plugin.call('node', 'NodeUnpublishVolume', { volume_id: 'v', target_path: join(dir, 'with') });
    } finally {
      client.close();
      await plugin.stop();
      await registry.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

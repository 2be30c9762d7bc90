import { ChildProcess, spawn } from 'child_process';
import { once } from 'events';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'fs';
import { createServer } from 'http';
import { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import * as grpc from '@grpc/grpc-js';
import { Plugin } from './plugin';
import { EnvironmentCredentials } from '../../../runtime/oci/auth/credentials';
import { push } from '../../../runtime/oci/push';
import { parseReference, Reference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { Distribution } from '../../util/distribution';
import { eventually } from '../../util/eventually';
import { Fault, FaultProxy, FaultRule } from '../../util/fault-proxy';
import { describeWithPeers, run } from '../../util/peers';
import { rawDescriptor, rawManifest } from '../../util/raw-artifact';
import { RogueRegistry } from '../../util/rogue-registry';

const root = join(__dirname, '..', '..', '..');
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

const capability = { mount: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } };

/** Unmounts everything under `dir`, deepest first, and removes it. */
function removeWithMounts(dir: string): void {
  run('sh', ['-c', `grep -o '${dir}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount`]);
  rmSync(dir, { recursive: true, force: true });
}

/** Blob downloads among the requests a FaultProxy or a RogueRegistry saw. */
const blobGets = (requests: (string | { method: string; path: string })[]) =>
  requests.map((r) => (typeof r === 'string' ? r : `${r.method} ${r.path}`)).filter((r) => r.startsWith('GET ') && r.includes('/blobs/')).length;

describeAsRoot('the CSI node plugin over its unix socket, with real bind mounts', ['docker-registry', 'mount'], () => {
  let registry: Distribution;
  let client: RegistryClient;
  let dir: string;
  let plugin: Plugin;
  let src: string;
  /** A target in the kubelet's pods directory (the plugin's --kubelet-dir is `dir`). */
  const at = (...parts: string[]) => join(dir, 'pods', ...parts);

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
    removeWithMounts(dir);
  });

  async function publishArtifact(tag: string, files: Record<string, string>, options: { repository?: string } = {}): Promise<string> {
    for (const [name, content] of Object.entries(files)) writeFileSync(join(src, name), content);
    const ref = parseReference(`${registry.host}/${options.repository ?? 'csi/models'}:${tag}`);
    await push(client, ref, Object.keys(files).map((path) => ({ path })), { cwd: src });
    return ref.text;
  }

  /** The mount points at `path` (stacked mounts count once each). */
  const mountsAt = (path: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((line) => line.split(' ')[4] === path).length;

  /** Waits up to 5 s for `condition`. */
  const until = async (condition: () => boolean) => expect(await eventually(async () => condition(), true, 5000)).toBe(true);

  const unpublish = (target: string, volumeId = `vol-${target.length}`) => plugin.call('node', 'NodeUnpublishVolume', { volume_id: volumeId, target_path: target });
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
    const target = at('p1', 'volume');
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
    await unpublish(target);
    expect(existsSync(target)).toBe(false);
    // Idempotent.
    await unpublish(target);
  });

  test('the prototype\'s reference forms: an oras:// prefix, and no tag meaning latest', async () => {
    const ref = await publishArtifact('latest', { 'data.txt': 'the latest' }, { repository: 'csi/untagged' });
    expect(ref).toBe(`${registry.host}/csi/untagged:latest`);
    for (const [name, text] of [['bare', `${registry.host}/csi/untagged`], ['prefixed', `oras://${registry.host}/csi/untagged`], ['both', `oras://${ref}`]]) {
      await publish(at(name), { 'oras.artifact.reference': text, 'oras.options.plainhttp': 'true' });
      expect(readFileSync(join(at(name), 'data.txt'), 'utf8')).toBe('the latest');
    }
    expect(await plugin.metric('oras_csi_pulls_total')).toBe(1);
  });

  test('a second publish of the same artifact hits the cache; a moved tag brings new content', async () => {
    const ref = await publishArtifact('moving', { 'data.txt': 'first' });
    const context = { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true' };
    await publish(at('t1'), context);
    await publish(at('t2'), context);
    expect(await plugin.metric('oras_csi_pulls_total')).toBe(1);
    expect(await plugin.metric('oras_csi_cache_hits_total')).toBe(1);
    // Publishing again to the same target is idempotent.
    await publish(at('t1'), context);

    await publishArtifact('moving', { 'data.txt': 'second' });
    await publish(at('t3'), context);
    expect(readFileSync(join(at('t3'), 'data.txt'), 'utf8')).toBe('second');
    expect(readFileSync(join(at('t1'), 'data.txt'), 'utf8')).toBe('first');
    expect(await plugin.metric('oras_csi_pulls_total')).toBe(2);
  });

  test('pull policies: Always and IfNotPresent resolve the tag (an unchanged digest is served from the cache); '
    + 'with the registry down IfNotPresent and Never serve the cache, and Always fails', async () => {
    const own = await Distribution.start();
    const ownClient = new RegistryClient(own.host, { plainHttp: true });
    try {
      writeFileSync(join(src, 'policy.txt'), 'cached');
      const ref = parseReference(`${own.host}/csi/policy:v1`);
      await push(ownClient, ref, [{ path: 'policy.txt' }], { cwd: src });
      const context = (policy: string) => ({ 'oras.artifact.reference': ref.text, 'oras.options.plainhttp': 'true', 'oras.options.pullpolicy': policy });
      const read = (target: string) => readFileSync(join(target, 'policy.txt'), 'utf8');

      await publish(at('if-not-present'), context('IfNotPresent'));
      await publish(at('always'), context('Always'));
      await publish(at('never'), context('Never'));
      for (const target of ['if-not-present', 'always', 'never']) expect(read(at(target))).toBe('cached');
      // One download: Always re-resolved the tag, found the digest cached, and did not pull again.
      expect(await plugin.metric('oras_csi_pulls_total')).toBe(1);
      expect(await plugin.metric('oras_csi_cache_hits_total')).toBe(2);

      await own.stop();
      await publish(at('offline-if-not-present'), context('IfNotPresent'));
      await publish(at('offline-never'), context('Never'));
      expect(read(at('offline-if-not-present'))).toBe('cached');
      expect(read(at('offline-never'))).toBe('cached');
      await expect(publish(at('offline-always'), context('Always'))).rejects.toMatchObject({
        code: grpc.status.UNAVAILABLE,
        details: expect.stringContaining(`${ref.text}: `),
      });
      expect(existsSync(join(at('offline-always'), 'policy.txt'))).toBe(false);
      expect(await plugin.metric('oras_csi_pulls_total')).toBe(1);
    } finally {
      ownClient.close();
      await own.stop().catch(() => undefined);
    }
  });

  test('volume stats of a published volume; unknown volumes are NOT_FOUND', async () => {
    const ref = await publishArtifact('stats', { 's.txt': 'stats' });
    const target = at('stats');
    await plugin.call('node', 'NodePublishVolume', { volume_id: 'vol-stats', target_path: target, volume_capability: capability, volume_context: { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true' } });
    const stats = await plugin.call('node', 'NodeGetVolumeStats', { volume_id: 'vol-stats', volume_path: target });
    expect(stats.usage.map((u: any) => u.unit)).toEqual(['BYTES', 'INODES']);
    expect(stats.usage[0].total).toBeGreaterThan(0);
    await expect(plugin.call('node', 'NodeGetVolumeStats', { volume_id: 'other', volume_path: target })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await expect(plugin.call('node', 'NodeGetVolumeStats', { volume_id: '', volume_path: target })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });

  test('publish is idempotent: after the mount vanished (a reboot) and after the tag moved', async () => {
    const ref = await publishArtifact('idem', { 'i.txt': 'one' });
    const target = at('idem');
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

  test('a warm publish mounts what the tag resolved to last while the registry answers; only the same answer keeps it', async () => {
    const ref = await publishArtifact('ahead', { 'a.txt': 'first' });
    let release = () => {};
    let held = 0;
    const hold = (): Fault => {
      held++;
      return { kind: 'hold', until: new Promise<void>((done) => { release = done; }) };
    };
    const proxy = await FaultProxy.start(registry.host, (method, path, count) => (method === 'HEAD' && path.endsWith('/manifests/ahead') && count > 0
      ? hold() : undefined));
    try {
      const context = { 'oras.artifact.reference': ref.replace(registry.host, proxy.host), 'oras.options.plainhttp': 'true' };
      /** A publish whose target is mounted while the registry's answer is held back; then the answer goes. */
      const publishHeld = async (name: string) => {
        const before = held;
        const publishing = publish(at(name), context);
        await until(() => mountsAt(at(name)) === 1 && held > before);
        release();
        await publishing;
      };
      await publish(at('cold'), context);

      // The answer, the same digest, confirms the mount.
      await publishHeld('same');
      expect(readFileSync(join(at('same'), 'a.txt'), 'utf8')).toBe('first');
      expect(mountsAt(at('same'))).toBe(1);

      await publishArtifact('ahead', { 'a.txt': 'second' });
      await publishHeld('moved');
      // The tag moved: the tentative mount went, and the new content took its place, not on top of it.
      expect(readFileSync(join(at('moved'), 'a.txt'), 'utf8')).toBe('second');
      expect(mountsAt(at('moved'))).toBe(1);
      expect(await plugin.metric('oras_csi_pulls_total')).toBe(2);
      const journal = readFileSync(join(dir, 'data', 'state', 'mounts.journal'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
      expect(journal.filter((c) => c.target === at('moved')).map((c) => c.record)).toEqual([
        expect.objectContaining({ tentative: true }), undefined, expect.not.objectContaining({ tentative: true }),
      ]);
    } finally {
      await proxy.stop();
    }
  });

  test('a tentative mount is never left behind: a failed publish undoes it, and so does the next publish after a kill', async () => {
    const ref = await publishArtifact('undo', { 'u.txt': 'first' });
    let rule: FaultRule = () => undefined;
    const proxy = await FaultProxy.start(registry.host, (...args) => rule(...args));
    try {
      const reference = ref.replace(registry.host, proxy.host);
      const context = (policy: string) => ({ 'oras.artifact.reference': reference, 'oras.options.plainhttp': 'true', 'oras.options.pullpolicy': policy });
      await publish(at('cold'), context('Always'));

      // Always with a registry that fails the resolve: mounted ahead, then undone; the error names the registry's answer.
      rule = (method) => (method === 'HEAD' ? { kind: 'status', status: 503 } : undefined);
      await expect(publish(at('refused'), context('Always'))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      expect(mountsAt(at('refused'))).toBe(0);
      // IfNotPresent may serve what the tag resolved to last: the tentative mount is confirmed.
      await publish(at('offline'), context('IfNotPresent'));
      expect(readFileSync(join(at('offline'), 'u.txt'), 'utf8')).toBe('first');

      rule = (method) => (method === 'HEAD' ? { kind: 'hold', until: new Promise(() => undefined) } : undefined);
      const pending = publish(at('killed'), context('Always')).catch((err) => err);
      await until(() => mountsAt(at('killed')) === 1);
      await plugin.stop('SIGKILL');
      await pending;
      await publishArtifact('undo', { 'u.txt': 'second' });
      rule = () => undefined;
      plugin = await Plugin.start(dir);
      await publish(at('killed'), context('Always'));
      expect(readFileSync(join(at('killed'), 'u.txt'), 'utf8')).toBe('second');
      expect(mountsAt(at('killed'))).toBe(1);
      await unpublish(at('killed'));
      expect(mountsAt(at('killed'))).toBe(0);
      expect(existsSync(at('killed'))).toBe(false);
    } finally {
      await proxy.stop();
    }
  });

  test('a tentative mount that cannot be undone fails the publish with UNAVAILABLE, and unpublish removes it later', async () => {
    const own = await Distribution.start();
    const ownClient = new RegistryClient(own.host, { plainHttp: true });
    let holding = false;
    let release = () => {};
    const proxy = await FaultProxy.start(own.host, (method) => (method === 'HEAD' && holding
      ? { kind: 'hold', until: new Promise<void>((done) => { release = done; }) } : undefined));
    let busy: ChildProcess | undefined;
    try {
      writeFileSync(join(src, 'b.txt'), 'busy');
      const ref = parseReference(`${own.host}/csi/busy:v1`);
      await push(ownClient, ref, [{ path: 'b.txt' }], { cwd: src });
      const context = { 'oras.artifact.reference': ref.text.replace(own.host, proxy.host), 'oras.options.plainhttp': 'true', 'oras.options.pullpolicy': 'Always' };
      await publish(at('cold'), context);

      holding = true;
      const failed = publish(at('busy'), context).catch((err) => err);
      await until(() => mountsAt(at('busy')) === 1 && proxy.requests.some((r) => r.fault === 'hold'));
      // A process working in the mount makes umount fail (EBUSY), and the registry is gone when the HEAD goes on.
      busy = spawn('sleep', ['60'], { cwd: at('busy'), stdio: 'ignore' });
      await own.stop();
      holding = false;
      release();
      expect(await failed).toMatchObject({ code: grpc.status.UNAVAILABLE, details: expect.stringContaining('could not be undone') });
      expect(mountsAt(at('busy'))).toBe(1);

      busy.kill();
      await once(busy, 'exit');
      await unpublish(at('busy'));
      expect(mountsAt(at('busy'))).toBe(0);
      expect(existsSync(at('busy'))).toBe(false);
    } finally {
      busy?.kill();
      await proxy.stop();
      ownClient.close();
      await own.stop().catch(() => undefined);
    }
  });

  test('the same volume on the same target with another artifact is ALREADY_EXISTS, and the mount keeps its content', async () => {
    const first = await publishArtifact('first', { 'f.txt': 'first' });
    const second = await publishArtifact('second', { 'f.txt': 'second' });
    const request = (ref: string, extra: Record<string, string> = {}) => ({
      volume_id: 'vol-same', target_path: at('same'), volume_capability: capability, volume_context: { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true', ...extra },
    });
    await plugin.call('node', 'NodePublishVolume', request(first));
    await expect(plugin.call('node', 'NodePublishVolume', request(second))).rejects.toMatchObject({ code: grpc.status.ALREADY_EXISTS });
    await expect(plugin.call('node', 'NodePublishVolume', request(first, { 'oras.artifact.layers.mediatype': 'text/plain' })))
      .rejects.toMatchObject({ code: grpc.status.ALREADY_EXISTS });
    expect(readFileSync(join(at('same'), 'f.txt'), 'utf8')).toBe('first');
    // Options that do not change the content (the pull policy) are the same volume.
    await plugin.call('node', 'NodePublishVolume', request(first, { 'oras.options.pullpolicy': 'Always' }));
  });

  test('target paths: absolute, normalized and in the kubelet\'s pods directory; nothing else is mounted', async () => {
    const ref = await publishArtifact('paths', { 'p.txt': 'p' });
    const context = { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true' };
    await publish(at('ok'), context);
    mkdirSync(join(dir, 'elsewhere'));
    symlinkSync(join(dir, 'elsewhere'), at('link'));
    const bad = [`${at('ok')}/`, `${at('x')}/../ok`, `${at()}//ok`, `${at()}/./ok`, 'pods/relative', '-V', join(dir, 'outside'), at('link'), '/var/lib/kubelet/pods/a/volume'];
    for (const target of bad) {
      await expect(plugin.call('node', 'NodePublishVolume', { volume_id: `vol-${at('ok').length}`, target_path: target, volume_capability: capability, volume_context: context }))
        .rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('target_path') });
    }
    for (const target of bad.slice(0, 6)) await expect(unpublish(target)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    expect(mountsAt(at('ok'))).toBe(1);
    expect(existsSync('-V')).toBe(false);
    expect(readdirSync(join(dir, 'elsewhere'))).toEqual([]);
  });

  test('unpublish unmounts only this plugin\'s mount of that volume, and never deletes a file', async () => {
    mkdirSync(at(), { recursive: true });
    writeFileSync(at('file'), 'keep me');
    await unpublish(at('file'));
    expect(readFileSync(at('file'), 'utf8')).toBe('keep me');

    mkdirSync(at('tmpfs'));
    expect(run('mount', ['-t', 'tmpfs', 'tmpfs', at('tmpfs')]).status).toBe(0);
    writeFileSync(join(at('tmpfs'), 'data'), 'precious');
    await unpublish(at('tmpfs'));
    expect(readFileSync(join(at('tmpfs'), 'data'), 'utf8')).toBe('precious');

    mkdirSync(at('full'));
    writeFileSync(join(at('full'), 'data'), 'kept');
    await unpublish(at('full'));
    expect(readFileSync(join(at('full'), 'data'), 'utf8')).toBe('kept');

    const ref = await publishArtifact('mine', { 'm.txt': 'mine' });
    await publish(at('mine'), { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true' });
    await expect(unpublish(at('mine'), 'another-volume')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    expect(readFileSync(join(at('mine'), 'm.txt'), 'utf8')).toBe('mine');
    // Someone else's mount on top of ours: not ours to remove.
    expect(run('mount', ['-t', 'tmpfs', 'tmpfs', at('mine')]).status).toBe(0);
    await expect(unpublish(at('mine'))).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    expect(mountsAt(at('mine'))).toBe(2);
    expect(run('umount', [at('mine')]).status).toBe(0);
    await unpublish(at('mine'));
    expect(existsSync(at('mine'))).toBe(false);

    // A cache entry deleted under its mount is still that volume's mount.
    await publish(at('gone'), { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true' });
    for (const entry of readdirSync(join(dir, 'data', 'cache', 'content'))) rmSync(join(dir, 'data', 'cache', 'content', entry), { recursive: true });
    await unpublish(at('gone'));
    expect(existsSync(at('gone'))).toBe(false);
  });

  describe('deadlines', () => {
    beforeEach(async () => {
      await plugin.stop();
      plugin = await Plugin.start(dir, ['--publish-timeout', '1']);
    });

    /** A registry whose only artifact, drip/slow:v1, sends its 1000-byte layer a byte every 100 ms. */
    async function dripping(): Promise<RogueRegistry> {
      const rogue = await RogueRegistry.start();
      rogue.artifact('drip/slow', 'v1', [{ content: Buffer.alloc(1000, 'd'), title: 'drip.bin', misbehaviour: { kind: 'drip', bytes: 1, everyMs: 100 } }]);
      return rogue;
    }

    /** A publish's outcome and how long it took (ms). */
    async function timed(work: Promise<unknown>): Promise<{ ms: number; outcome: unknown }> {
      const started = Date.now();
      const outcome = await work.then(() => 'OK', (err) => err);
      return { ms: Date.now() - started, outcome };
    }

    test('a manifest that never comes: DEADLINE_EXCEEDED at the deadline', async () => {
      const rogue = await RogueRegistry.start();
      rogue.manifest('hang/never', rawManifest([]), 'v1', { kind: 'hang' });
      try {
        const { ms, outcome } = await timed(publish(at('hang'), { 'oras.artifact.reference': `${rogue.host}/hang/never:v1`, 'oras.options.plainhttp': 'true' }));
        expect(outcome).toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
        expect(ms).toBeLessThan(3000);
      } finally {
        await rogue.stop();
      }
    }, 20_000);

    test('a dripping blob: the publish answers at its deadline, and an unpublish of its target does not wait', async () => {
      const rogue = await dripping();
      try {
        const context = { 'oras.artifact.reference': `${rogue.host}/drip/slow:v1`, 'oras.options.plainhttp': 'true' };
        const first = await timed(publish(at('drip'), context));
        expect(first.outcome).toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED, details: expect.stringMatching(/goes on in the background/) });
        expect(first.ms).toBeLessThan(3000);
        const cleanup = await timed(unpublish(at('drip')));
        expect(cleanup).toMatchObject({ outcome: 'OK' });
        expect(cleanup.ms).toBeLessThan(1000);
        // The kubelet's retry joins the download under way.
        expect((await timed(publish(at('drip'), context))).outcome).toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
        expect(blobGets(rogue.requests)).toBe(1);
      } finally {
        await rogue.stop();
      }
    }, 20_000);

    test('a download past --pull-timeout is cancelled, and the next publish starts it anew', async () => {
      await plugin.stop();
      plugin = await Plugin.start(dir, ['--publish-timeout', '1', '--pull-timeout', '2']);
      const rogue = await dripping();
      try {
        const context = { 'oras.artifact.reference': `${rogue.host}/drip/slow:v1`, 'oras.options.plainhttp': 'true' };
        await expect(publish(at('drip'), context)).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
        // Under way after the answer, cancelled at 2 s: its partial tree goes.
        const tmp = join(dir, 'data', 'cache', 'tmp');
        expect(readdirSync(tmp)).toHaveLength(1);
        for (let i = 0; i < 50 && readdirSync(tmp).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
        expect(readdirSync(tmp)).toEqual([]);
        expect(blobGets(rogue.requests)).toBe(1);
        await expect(publish(at('drip'), context)).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
        expect(blobGets(rogue.requests)).toBe(2);
      } finally {
        await rogue.stop();
      }
    }, 20_000);

    test('a download longer than the deadline goes on in the background, and a retry mounts it', async () => {
      const ref = await publishArtifact('long', { 'long.bin': 'l'.repeat(2_500_000) });
      const proxy = await FaultProxy.start(registry.host, (method, path) => (method === 'GET' && path.includes('/blobs/') ? { kind: 'slow', bytesPerSecond: 1_000_000 } : undefined));
      try {
        const context = { 'oras.artifact.reference': ref.replace(registry.host, proxy.host), 'oras.options.plainhttp': 'true' };
        await expect(publish(at('long'), context)).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
        let outcome: unknown;
        for (let i = 0; i < 10 && outcome !== 'OK'; i++) outcome = (await timed(publish(at('long'), context))).outcome;
        expect(outcome).toBe('OK');
        expect(readFileSync(join(at('long'), 'long.bin')).length).toBe(2_500_000);
        expect(blobGets(proxy.requests)).toBe(1);
        expect(await plugin.metric('oras_csi_pulls_total')).toBe(1);
      } finally {
        await proxy.stop();
      }
    }, 30_000);
  });

  test.each([
    ['an index of more manifests than the client reads', 300, 1],
    ['a manifest of more layers than the client reads', 1, 10_001],
  ])('%s is FAILED_PRECONDITION', async (_title, manifests, layers) => {
    const rogue = await RogueRegistry.start();
    const files = (n: number, from: number) => Array.from({ length: n }, (_, i) => rawDescriptor({ content: Buffer.from(`${from + i}`), title: `f${from + i}` }));
    const children = Array.from({ length: manifests }, (_, i) => rogue.manifest('fan/out', rawManifest(files(layers, i * layers))));
    rogue.manifest('fan/out', manifests > 1 ? { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: children } : rawManifest(files(layers, 0)), 'v1');
    try {
      await expect(publish(at('fan'), { 'oras.artifact.reference': `${rogue.host}/fan/out:v1`, 'oras.options.plainhttp': 'true' }))
        .rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringMatching(/exceeds the limit/) });
      expect(blobGets(rogue.requests)).toBe(0);
    } finally {
      await rogue.stop();
    }
  });

  test('each call is logged with its method, volume, target, code and duration; secrets never', async () => {
    const ref = await publishArtifact('logged', { 'l.txt': 'l' });
    const secret = 'hunter2-never-logged';
    const dockerconfig = JSON.stringify({ auths: { 'elsewhere.example': { auth: Buffer.from(`user:${secret}`).toString('base64') } } });
    await plugin.call('node', 'NodePublishVolume', {
      volume_id: 'vol-logged',
      target_path: at('logged'),
      volume_capability: capability,
      secrets: { '.dockerconfigjson': dockerconfig },
      volume_context: { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true', 'csi.storage.k8s.io/serviceAccount.tokens': `{"aud":{"token":"${secret}"}}` },
    });
    await expect(unpublish('relative')).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await unpublish(at('logged'), 'vol-logged');
    const calls = plugin.events('csi-call');
    expect(calls).toEqual(expect.arrayContaining([
      expect.objectContaining({ method: 'NodePublishVolume', volumeId: 'vol-logged', target: at('logged'), code: 'OK', ms: expect.any(Number) }),
      expect.objectContaining({ method: 'NodeUnpublishVolume', target: 'relative', code: 'INVALID_ARGUMENT', message: expect.stringContaining('absolute') }),
      expect.objectContaining({ method: 'NodeUnpublishVolume', volumeId: 'vol-logged', code: 'OK' }),
    ]));
    expect(plugin.log).not.toContain(secret);
    expect(plugin.log).not.toContain(Buffer.from(`user:${secret}`).toString('base64'));
    expect(plugin.log).not.toContain('dockerconfigjson');
  });

  test('pull policy Never with an empty cache says what to do', async () => {
    const ref = await publishArtifact('never', { 'a.txt': 'a' });
    await expect(publish(at('t'), { 'oras.artifact.reference': ref, 'oras.options.pullpolicy': 'Never' }))
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
    const body = { volume_id: 'v', target_path: at('x'), volume_capability: capability, volume_context: { 'oras.artifact.reference': `${registry.host}/a/b:c` }, ...override };
    await expect(plugin.call('node', 'NodePublishVolume', body)).rejects.toMatchObject({ code, details: expect.stringMatching(message) });
  });

  test('a missing artifact is NOT_FOUND', async () => {
    await expect(publish(at('t'), { 'oras.artifact.reference': `${registry.host}/csi/none:v1`, 'oras.options.plainhttp': 'true' }))
      .rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  test('20 parallel publishes of one artifact cause exactly one download', async () => {
    const ref = await publishArtifact('parallel', { 'big.bin': 'x'.repeat(2_000_000) });
    const proxy = await FaultProxy.start(registry.host);
    try {
      const proxied = ref.replace(registry.host, proxy.host);
      await Promise.all(Array.from({ length: 20 }, (_, i) => publish(at(`par-${i}`), { 'oras.artifact.reference': proxied, 'oras.options.plainhttp': 'true' })));
      expect(blobGets(proxy.requests)).toBe(1);
      expect(await plugin.metric('oras_csi_pulls_total')).toBe(1);
      for (let i = 0; i < 20; i++) expect(readFileSync(join(at(`par-${i}`), 'big.bin')).length).toBe(2_000_000);
    } finally {
      await proxy.stop();
    }
  });

  test('a plugin killed during a pull: after restart no partial entry is served, and earlier mounts can be unpublished', async () => {
    const early = await publishArtifact('early', { 'e.txt': 'early' });
    await publish(at('early'), { 'oras.artifact.reference': early, 'oras.options.plainhttp': 'true' });
    const slow = await publishArtifact('slow', { 'big.bin': 'y'.repeat(3_000_000) });
    const proxy = await FaultProxy.start(registry.host, (method, path) => (path.includes('/blobs/') && method === 'GET' ? { kind: 'slow', bytesPerSecond: 1_000_000 } : undefined));
    try {
      const attempt = publish(at('slow'), { 'oras.artifact.reference': slow.replace(registry.host, proxy.host), 'oras.options.plainhttp': 'true' }).catch((e) => e);
      await new Promise((r) => setTimeout(r, 800));
      await plugin.stop('SIGKILL');
      await attempt;
    } finally {
      await proxy.stop();
    }
    expect(readdirSync(join(dir, 'data', 'cache', 'tmp')).length).toBeGreaterThan(0);
    plugin = await Plugin.start(dir);
    expect(readdirSync(join(dir, 'data', 'cache', 'tmp'))).toEqual([]);
    expect(readFileSync(join(at('early'), 'e.txt'), 'utf8')).toBe('early');
    await publish(at('slow2'), { 'oras.artifact.reference': slow, 'oras.options.plainhttp': 'true' });
    expect(readFileSync(join(at('slow2'), 'big.bin')).length).toBe(3_000_000);
    await unpublish(at('early'));
    expect(existsSync(at('early'))).toBe(false);
  });

  test('mount records survive a kill through their journal: a line the kill cut short is ignored, and a restart folds the journal into the snapshot', async () => {
    const reference = await publishArtifact('journal', { 'j.txt': 'journal' });
    for (const name of ['j1', 'j2', 'j3']) await publish(at(name), { 'oras.artifact.reference': reference, 'oras.options.plainhttp': 'true' });
    await unpublish(at('j2'));
    await plugin.stop('SIGKILL');
    const state = join(dir, 'data', 'state');
    // j1 was a cold publish; j2 and j3 were mounted ahead, each a tentative line and its confirmation.
    expect(readFileSync(join(state, 'mounts.journal'), 'utf8').trim().split('\n')).toHaveLength(6);
    appendFileSync(join(state, 'mounts.journal'), `{"target":"${at('j9')}","rec`);
    plugin = await Plugin.start(dir);
    expect(readFileSync(join(state, 'mounts.journal'), 'utf8')).toBe('');
    expect(Object.keys(JSON.parse(readFileSync(join(state, 'mounts.json'), 'utf8'))).sort()).toEqual([at('j1'), at('j3')]);
    for (const name of ['j1', 'j3']) {
      await unpublish(at(name));
      expect(existsSync(at(name))).toBe(false);
    }
  });

  test('SIGTERM with a volume published: the plugin keeps serving until it is unpublished, then exits 0', async () => {
    await plugin.stop();
    plugin = await Plugin.start(dir, ['--drain-timeout', '30s']);
    const ref = await publishArtifact('drain', { 'd.txt': 'd' });
    await publish(at('drain'), { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true' });
    plugin.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    expect(plugin.child.exitCode).toBeNull();
    expect(plugin.events('draining')).toEqual([expect.objectContaining({ published: 1, timeoutSeconds: 30 })]);
    // The kubelet's unpublish of a pod deleted together with the plugin still works.
    await unpublish(at('drain'));
    const started = Date.now();
    expect(await plugin.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(existsSync(at('drain'))).toBe(false);
  });

  test('SIGTERM with nothing published, or a second signal while draining, ends the plugin at once', async () => {
    await plugin.stop();
    plugin = await Plugin.start(dir, ['--drain-timeout', '30s']);
    const ref = await publishArtifact('drain2', { 'd.txt': 'd' });
    await publish(at('drain2'), { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true' });
    plugin.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    const started = Date.now();
    plugin.child.kill('SIGTERM');
    expect(await plugin.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(2000);
    const idle = await Plugin.start(join(dir, 'idle'), ['--drain-timeout', '30s']);
    const idleStart = Date.now();
    await idle.stop();
    expect(Date.now() - idleStart).toBeLessThan(2000);
    expect(idle.events('draining')).toEqual([]);
  });

  test('a fill that would pass the size cap first collects unused entries, least recently used first; one that cannot fit is RESOURCE_EXHAUSTED', async () => {
    await plugin.stop();
    plugin = await Plugin.start(dir, ['--cache-max-size', '3Mi']);
    const context = (ref: string) => ({ 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true' });
    const refs: Record<string, string> = {};
    for (const name of ['a', 'b', 'c']) refs[name] = await publishArtifact(`gc-${name}`, { [`${name}.bin`]: name.repeat(1_200_000) });
    await publish(at('ga'), context(refs.a));
    await publish(at('gb'), context(refs.b));
    await unpublish(at('ga'));
    await unpublish(at('gb'));
    const entries = () => readdirSync(join(dir, 'data', 'cache', 'content')).length;
    // 2.4 MB fit under 3 MiB: nothing went.
    expect(entries()).toBe(2);
    // c would make 3.6 MB: a, the least recently used, goes before c is filled.
    await publish(at('gc'), context(refs.c));
    expect(entries()).toBe(2);
    await publish(at('gb2'), context(refs.b));
    expect(await plugin.metric('oras_csi_pulls_total')).toBe(3);
    expect(await plugin.metric('oras_csi_cache_hits_total')).toBe(1);
    // b and c are mounted: a cannot fit.
    await expect(publish(at('ga2'), context(refs.a))).rejects.toMatchObject({
      code: grpc.status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/--cache-max-size/),
    });
    await unpublish(at('gc'));
    await publish(at('ga2'), context(refs.a));
    expect(entries()).toBe(2);
    expect(readFileSync(join(at('ga2'), 'a.bin'), 'utf8')).toBe('a'.repeat(1_200_000));
    expect(readFileSync(join(at('gb2'), 'b.bin'), 'utf8')).toBe('b'.repeat(1_200_000));
  });

  test('directory artifacts: the cap counts the bytes their trees take on disk, not their compressed layers', async () => {
    await plugin.stop();
    plugin = await Plugin.start(dir, ['--cache-max-size', '4Mi']);
    const tree = (name: string) => {
      const top = join(src, name);
      mkdirSync(join(top, 'sub'), { recursive: true });
      // 3 MB that gzip makes a few kilobytes of: 30 files of 100 kB in two directories.
      for (let i = 0; i < 30; i++) writeFileSync(join(top, i % 2 ? 'sub' : '', `part-${i}.bin`), name.repeat(100_000));
      return name;
    };
    const pushTree = async (name: string) => {
      const ref = parseReference(`${registry.host}/csi/trees:${name}`);
      await push(client, ref, [{ path: tree(name) }], { cwd: src });
      return ref.text;
    };
    const onDisk = () => Number(run('du', ['-s', '-B1', join(dir, 'data', 'cache', 'content')]).stdout.split('\t')[0]);
    const context = (ref: string) => ({ 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true' });
    await publish(at('tree-x'), context(await pushTree('x')));
    expect(readFileSync(join(at('tree-x'), 'x', 'sub', 'part-1.bin'), 'utf8')).toHaveLength(100_000);
    await unpublish(at('tree-x'));
    expect(onDisk()).toBeGreaterThan(3_000_000);
    await publish(at('tree-y'), context(await pushTree('y')));
    // x (unused) went once y unpacked: two trees would be 6 MB on disk, over the 4 MiB cap.
    expect(readdirSync(join(dir, 'data', 'cache', 'content'))).toHaveLength(1);
    expect(onDisk()).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(await plugin.metric('oras_csi_cache_bytes')).toBeGreaterThanOrEqual(3_000_000);
    await unpublish(at('tree-y'));
  });

  test('a full disk is RESOURCE_EXHAUSTED, found before the download', async () => {
    await plugin.stop();
    rmSync(join(dir, 'data'), { recursive: true });
    mkdirSync(join(dir, 'data'));
    expect(run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', join(dir, 'data')]).status).toBe(0);
    plugin = await Plugin.start(dir);
    const ref = await publishArtifact('full', { 'big.bin': 'f'.repeat(2_000_000) });
    const proxy = await FaultProxy.start(registry.host);
    try {
      await expect(publish(at('full'), { 'oras.artifact.reference': ref.replace(registry.host, proxy.host), 'oras.options.plainhttp': 'true' }))
        .rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/disk|space/) });
      expect(blobGets(proxy.requests)).toBe(0);
    } finally {
      await proxy.stop();
    }
  });

  test('namespaces do not share cache entries by default', async () => {
    const ref = await publishArtifact('ns', { 'n.txt': 'n' });
    await publish(at('a'), { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true', 'csi.storage.k8s.io/pod.namespace': 'team-a' });
    await publish(at('b'), { 'oras.artifact.reference': ref, 'oras.options.plainhttp': 'true', 'csi.storage.k8s.io/pod.namespace': 'team-b' });
    expect(await plugin.metric('oras_csi_pulls_total')).toBe(2);
  });
});

describeAsRoot('the CSI node plugin and private artifacts', ['docker-registry', 'htpasswd', 'mount'], () => {
  let registry: Distribution;
  let client: RegistryClient;
  let dir: string;
  let plugin: Plugin;
  let ref: Reference;
  let digest: string;
  const at = (name: string) => join(dir, 'pods', name);
  const dockerconfig = () => JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from('reader:reader-secret').toString('base64') } } });
  const body = (target: string, reference: string, secrets: Record<string, string>, context: Record<string, string> = {}) => ({
    volume_id: `v-${target}`,
    target_path: at(target),
    volume_capability: capability,
    secrets,
    volume_context: { 'oras.artifact.reference': reference, 'oras.options.plainhttp': 'true', ...context },
  });

  beforeAll(async () => {
    registry = await Distribution.start({ htpasswd: { users: { reader: 'reader-secret' } } });
    client = new RegistryClient(registry.host, { plainHttp: true, credentials: new EnvironmentCredentials({ ORAS_USER: 'reader', ORAS_PASS: 'reader-secret' }) });
    const src = mkdtempSync(join(tmpdir(), 'oras-csi-src-'));
    writeFileSync(join(src, 'secret.txt'), 'classified');
    ref = parseReference(`${registry.host}/private/data:v1`);
    await push(client, ref, [{ path: 'secret.txt' }], { cwd: src });
    rmSync(src, { recursive: true });
    digest = (await client.resolve(ref.repository, ref.manifestReference)).digest;
  });
  afterAll(async () => {
    client.close();
    await registry.stop();
  });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'oras-csi-'));
  });
  afterEach(async () => {
    await plugin.stop();
    removeWithMounts(dir);
  });

  test('a cached private artifact is served only after the pod\'s credentials are checked', async () => {
    plugin = await Plugin.start(dir);
    await plugin.call('node', 'NodePublishVolume', body('with', ref.text, { '.dockerconfigjson': dockerconfig() }));
    expect(readFileSync(join(at('with'), 'secret.txt'), 'utf8')).toBe('classified');
    await expect(plugin.call('node', 'NodePublishVolume', body('without', ref.text, {})))
      .rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(/refused these credentials.*nodePublishSecretRef/) });
    expect(existsSync(join(at('without'), 'secret.txt'))).toBe(false);
    // By digest too: the cached tree is not served without the check.
    await expect(plugin.call('node', 'NodePublishVolume', body('by-digest', `${registry.host}/private/data@${digest}`, {})))
      .rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    await plugin.call('node', 'NodeUnpublishVolume', { volume_id: 'v-with', target_path: at('with') });
  });

  /**
   * A registry the attacker runs answers every manifest HEAD with the digest
   * of the private artifact, and refuses the rest, as if the attacker's pod
   * had access there.
   */
  async function liar(): Promise<{ host: string; gets: number; stop: () => Promise<void> }> {
    let gets = 0;
    const server = createServer((req, res) => {
      if (req.method === 'HEAD' && req.url?.includes('/manifests/')) {
        res.writeHead(200, { 'Docker-Content-Digest': digest, 'Content-Type': 'application/vnd.oci.image.manifest.v1+json', 'Content-Length': 500 }).end();
        return;
      }
      gets++;
      res.writeHead(403, { 'Content-Type': 'application/json' }).end('{"errors":[{"code":"DENIED"}]}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
      get gets() { return gets; },
      stop: () => new Promise((resolve) => server.close(() => resolve())),
    };
  }

  test.each([
    ['in the same namespace', [], {}, {}],
    ['across namespaces, with --share-cache-across-namespaces', ['--share-cache-across-namespaces'],
      { 'csi.storage.k8s.io/pod.namespace': 'owner' }, { 'csi.storage.k8s.io/pod.namespace': 'attacker' }],
  ])('a registry that names a cached private digest does not get the artifact: %s', async (_title, flags, ownerContext, attackerContext) => {
    plugin = await Plugin.start(dir, flags);
    const rogue = await liar();
    try {
      await plugin.call('node', 'NodePublishVolume', body('owner', ref.text, { '.dockerconfigjson': dockerconfig() }, ownerContext));
      for (const [target, reference] of [['by-tag', `${rogue.host}/private/data:v1`], ['by-digest', `${rogue.host}/private/data@${digest}`]]) {
        await expect(plugin.call('node', 'NodePublishVolume', body(target, reference, {}, attackerContext)))
          .rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
        expect(existsSync(join(at(target), 'secret.txt'))).toBe(false);
      }
      // The lying registry was asked for the content itself, not only for a digest.
      expect(rogue.gets).toBeGreaterThan(0);
      // The owner's second pod still comes from the cache.
      await plugin.call('node', 'NodePublishVolume', body('owner-2', ref.text, { '.dockerconfigjson': dockerconfig() }, ownerContext));
      expect(readFileSync(join(at('owner-2'), 'secret.txt'), 'utf8')).toBe('classified');
      expect(await plugin.metric('oras_csi_pulls_total')).toBe(1);
      expect(await plugin.metric('oras_csi_cache_hits_total')).toBe(1);
    } finally {
      await rogue.stop();
    }
  });
});

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Plugin } from './plugin';
import { push } from '../../../runtime/oci/push';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { Distribution } from '../../util/distribution';
import { describeWithPeers, requirePeer, run } from '../../util/peers';

/**
 * Why csi-sanity v5.4.0 skips specs, by its skip message: each names a
 * capability this driver does not advertise. Nothing is skipped by us: a
 * new skip message fails the test until it is explained here.
 */
export const SKIP_REASONS: Record<string, string> = {
  'ControllerPublishVolume not supported': 'nothing is attached (CSIDriver attachRequired: false): the node mounts from its cache',
  'ControllerUnpublishVolume not supported': 'nothing is attached',
  'Controller Publish, UnpublishVolume not supported': 'nothing is attached; "Node Service should work" runs the create, publish, unpublish and delete lifecycle',
  'ListVolumes not supported': 'volumes live in Kubernetes PersistentVolumes; the controller keeps no list of its own that would survive a restart',
  'GetCapacity not supported': 'an artifact volume takes no storage capacity of the driver',
  'NodeStageVolume not supported': 'no staging: each publish is a bind mount of the node cache entry',
  'NodeUnstageVolume not supported': 'no staging',
  'ControllerExpandVolume not supported': 'artifacts are read-only trees: nothing to expand',
  'NodeExpandVolume not supported': 'nothing to expand',
  'ControllerModifyVolume not supported': 'no mutable parameters (VolumeAttributesClass): a volume shows one artifact',
  'Modify volume not supported': 'no mutable parameters',
  'Modify Volume not supported': 'no mutable parameters',
  'CreateSnapshot not supported': 'no snapshots',
  'DeleteSnapshot not supported': 'no snapshots',
  'ListSnapshots not supported': 'no snapshots',
  'Snapshot not supported': 'no snapshots',
  'Volume Cloning not supported': 'no clones: a second claim on the same artifact shares the node cache instead',
  'GroupControllerService not supported': 'no group snapshots',
};

/** Specs that create and publish a volume: they must pass. */
const PUBLISHING_SPECS = [
  'Node Service should work',
  'Node Service should be idempotent',
  'Node Service NodeUnpublishVolume should remove target path',
  'Node Service NodeGetVolumeStats should fail when volume does not exist on the specified path',
];

interface SpecReport {
  readonly ContainerHierarchyTexts: string[] | null;
  readonly LeafNodeText: string;
  readonly State: string;
  readonly Failure?: { readonly Message: string };
}

describeWithPeers(['csi-sanity-readonly', 'mount', 'docker-registry'], 'csi-sanity v5.4.0 against the controller and node plugin', () => {
  let dir: string;
  let plugin: Plugin;
  let registry: Distribution;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'oras-sanity-'));
    // csi-sanity makes its mount and staging directories, but not their parent.
    mkdirSync(join(dir, 'pods'));
    registry = await Distribution.start();
    const src = join(dir, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'model.txt'), 'weights\n');
    const client = new RegistryClient(registry.host, { plainHttp: true });
    await push(client, parseReference(`${registry.host}/sanity/model:v1`), [{ path: 'model.txt' }], { cwd: src });
    client.close();
    writeFileSync(join(dir, 'parameters.yaml'), [
      `oras.artifact.reference: ${registry.host}/sanity/model:v1`,
      'oras.options.plainhttp: "true"',
      '',
    ].join('\n'));
    plugin = await Plugin.start(dir, ['--controller']);
  });
  afterAll(async () => {
    await plugin?.stop();
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every spec of an advertised capability passes, publishing ones included; each skip is csi-sanity\'s, for a capability not advertised', async () => {
    if (process.getuid?.() !== 0) throw new Error('csi-sanity mounts: run it as root');
    const report = join(dir, 'report.json');
    const result = run(requirePeer('csi-sanity-readonly'), [
      '--csi.endpoint', `unix://${plugin.socket}`,
      // Inside the pods directory of the plugin's --kubelet-dir, as the kubelet's targets are.
      '--csi.mountdir', join(dir, 'pods', 'mnt'), '--csi.stagingdir', join(dir, 'pods', 'stage'),
      '--csi.testvolumeparameters', join(dir, 'parameters.yaml'),
      '--ginkgo.no-color', '--ginkgo.json-report', report,
    ], { timeoutMs: 600_000 });
    const specs: SpecReport[] = JSON.parse(readFileSync(report, 'utf8'))[0].SpecReports;
    const name = (s: SpecReport) => [...s.ContainerHierarchyTexts ?? [], s.LeafNodeText].join(' ').replace(/ \[[^\]]+\]/g, '');
    const failed = specs.filter((s) => s.State !== 'passed' && s.State !== 'skipped' && s.State !== 'pending');
    expect(failed.map((s) => `${name(s)}: ${s.Failure?.Message}`)).toEqual([]);
    expect(result.status).toBe(0);
    const skipMessages = new Set(specs.filter((s) => s.State === 'skipped').map((s) => s.Failure?.Message ?? ''));
    expect([...skipMessages].filter((m) => !(m in SKIP_REASONS))).toEqual([]);
    const passed = specs.filter((s) => s.State === 'passed').map(name);
    expect(passed).toEqual(expect.arrayContaining(PUBLISHING_SPECS));
    expect(passed.length).toBeGreaterThanOrEqual(32);
    // They really published: the node mounted the artifact that CreateVolume's context named, asked read-only.
    await plugin.stop();
    expect(result.output).toMatch(/csi-sanity-readonly: [1-9]\d* writer access modes asked as MULTI_NODE_READER_ONLY/);
    const ok = (method: string) => plugin.events('csi-call').filter((e) => e.method === method && e.code === 'OK').length;
    expect({ create: ok('CreateVolume') > 0, publish: ok('NodePublishVolume') > 0, unpublish: ok('NodeUnpublishVolume') > 0 })
      .toEqual({ create: true, publish: true, unpublish: true });
  });
});

/**
 * The node plugin alone, as the DaemonSet runs it, against csi-sanity itself
 * (unchanged). What it cannot run without a Controller service ran above.
 */
const NODE_ONLY_SKIPS: Record<string, string> = {
  'Controller Server': 'the DaemonSet serves no Controller: the provisioner Deployment does',
  'GroupController': 'no group snapshots',
  'CreateSnapshot|DeleteSnapshot|ListSnapshots': 'no snapshots',
  'ExpandVolume': 'nothing to expand',
  'should remove target path|should fail when volume does not exist on the specified path': 'they call CreateVolume first: the run above covers them',
};

describeWithPeers(['csi-sanity', 'mount'], 'csi-sanity v5.4.0 against the node plugin alone', () => {
  let dir: string;
  let plugin: Plugin;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'oras-sanity-node-'));
    mkdirSync(join(dir, 'pods'));
    plugin = await Plugin.start(dir);
  });
  afterAll(async () => {
    await plugin?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every spec that needs no Controller passes', () => {
    const result = run(requirePeer('csi-sanity'), [
      '--csi.endpoint', `unix://${plugin.socket}`,
      '--csi.mountdir', join(dir, 'pods', 'mnt'), '--csi.stagingdir', join(dir, 'pods', 'stage'),
      '--ginkgo.skip', Object.keys(NODE_ONLY_SKIPS).join('|'), '--ginkgo.no-color',
    ], { timeoutMs: 300_000 });
    const summary = /Ran (\d+) of (\d+) Specs[\s\S]*?(\d+) Passed \| (\d+) Failed/.exec(result.output);
    expect({ summary: summary?.[0], status: result.status }).toEqual({ summary: expect.stringMatching(/ 0 Failed$/), status: 0 });
    expect(Number(summary![3])).toBeGreaterThanOrEqual(13);
  });
});

import { mkdirSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Plugin } from './plugin';
import { describeWithPeers, requirePeer, run } from '../../util/peers';

/**
 * The specs csi-sanity v5.4.0 cannot apply to this driver, and why. The plugin
 * serves ephemeral inline volumes: it has no Controller service (no
 * CreateVolume), no staging and no expansion.
 */
export const SKIPPED_SPECS: Record<string, string> = {
  'Controller Server': 'no Controller service: volumes are ephemeral and inline, so there is nothing to create, attach or list',
  'GroupController': 'no group snapshots',
  'CreateSnapshot|DeleteSnapshot|ListSnapshots': 'no snapshots',
  'ExpandVolume': 'artifacts are read-only trees: nothing to expand',
  'should remove target path': 'creates its volume with Controller.CreateVolume first; lib-tests/runtime/csi/node.test.ts checks that unpublish removes the target',
  'should fail when volume does not exist on the specified path':
    'creates its volume with Controller.CreateVolume first; node.test.ts covers NodeGetVolumeStats of a published volume',
};

describeWithPeers(['csi-sanity', 'mount'], 'csi-sanity v5.4.0 against the node plugin', () => {
  let dir: string;
  let plugin: Plugin;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'oras-sanity-'));
    // csi-sanity makes its mount and staging directories, but not their parent.
    mkdirSync(join(dir, 'pods'));
    plugin = await Plugin.start(dir);
  });
  afterAll(async () => {
    await plugin?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every applicable spec passes', () => {
    if (process.getuid?.() !== 0) throw new Error('csi-sanity mounts: run it as root');
    const result = run(requirePeer('csi-sanity'), [
      '--csi.endpoint', `unix://${plugin.socket}`,
      // Inside the pods directory of the plugin's --kubelet-dir, as the kubelet's targets are.
      '--csi.mountdir', join(dir, 'pods', 'mnt'), '--csi.stagingdir', join(dir, 'pods', 'stage'),
      '--ginkgo.skip', Object.keys(SKIPPED_SPECS).join('|'), '--ginkgo.no-color',
    ], { timeoutMs: 300_000 });
    const summary = /Ran (\d+) of (\d+) Specs[\s\S]*?(\d+) Passed \| (\d+) Failed/.exec(result.output);
    expect({ summary: summary?.[0], status: result.status }).toEqual({ summary: expect.stringMatching(/ 0 Failed$/), status: 0 });
    expect(Number(summary![3])).toBeGreaterThanOrEqual(13);
  });
});

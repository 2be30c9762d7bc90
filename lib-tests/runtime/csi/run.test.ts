import { runCsi } from '../../../runtime/csi/run';

describe('runCsi flags for paths and deadlines', () => {
  const base = ['--endpoint', 'unix:///tmp/never/csi.sock', '--node-id', 'n', '--cache-dir', '/tmp/never'];
  test.each([
    [['--kubelet-dir', 'var/lib/kubelet'], /--kubelet-dir "var\/lib\/kubelet" must be an absolute path/],
    [['--publish-timeout', '120'], /--publish-timeout 120 must be below the kubelet's 120 seconds/],
    [['--publish-timeout', '0'], /--publish-timeout must be a positive integer/],
    [['--pull-timeout', '1.5'], /--pull-timeout must be a positive integer/],
  ])('%j is a usage error', async (extra, message) => {
    await expect(runCsi([...base, ...extra])).rejects.toMatchObject({ name: 'UsageError', message: expect.stringMatching(message) });
  });
});

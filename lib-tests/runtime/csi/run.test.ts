import { runCsi } from '../../../runtime/csi/run';

describe('runCsi usage errors', () => {
  const base = ['--endpoint', 'unix:///tmp/never/csi.sock', '--node-id', 'n', '--cache-dir', '/tmp/never'];
  test.each([
    [['--kubelet-dir', 'var/lib/kubelet'], /--kubelet-dir "var\/lib\/kubelet" must be an absolute path/],
    [['--publish-timeout', '120'], /--publish-timeout 120 must be below the kubelet's 120 seconds/],
    [['--publish-timeout', '0'], /--publish-timeout must be a positive integer/],
    [['--pull-timeout', '1.5'], /--pull-timeout must be a positive integer/],
    [['--registration-dir', '/registration'], /--registration-dir and --kubelet-registration-path go together/],
    [['--kubelet-registration-path', '/var/lib/kubelet/plugins/csi.oras.land/csi.sock'], /go together/],
    [['--registration-dir', '/registration', '--kubelet-registration-path', 'plugins/csi.sock'], /--kubelet-registration-path "plugins\/csi.sock" must be the host path of the CSI socket/],
    [['--health-port', 'x'], /--health-port must be a positive integer, not "x"/],
  ])('%j is a usage error', async (extra, message) => {
    await expect(runCsi([...base, ...extra])).rejects.toMatchObject({ name: 'UsageError', message: expect.stringMatching(message) });
  });

  test.each([
    [['--controller', '--node-id', 'n'], /--cache-dir is required to serve the Node service next to the Controller \(or give neither for the Controller alone\)/],
    [['--controller', '--cache-dir', '/tmp/never'], /--node-id is required .*to serve the Node service/],
    [['--controller', '--registration-dir', '/registration', '--kubelet-registration-path', '/var/lib/kubelet/plugins/x/csi.sock'], /registration is for the Node service/],
  ])('%j is a usage error', async (args, message) => {
    await expect(runCsi(['--endpoint', 'unix:///tmp/never/csi.sock', ...args])).rejects.toMatchObject({ name: 'UsageError', message: expect.stringMatching(message) });
  });
  test('--kubeconfig without --controller is a usage error', async () => {
    await expect(runCsi([...base, '--kubeconfig', '/tmp/kubeconfig'])).rejects.toMatchObject({ name: 'UsageError', message: expect.stringMatching(/--kubeconfig is for --controller/) });
  });
});

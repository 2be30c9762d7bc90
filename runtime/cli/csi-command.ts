import { loadBundled } from './bundled';
import { Command } from './command';

export const csiCommand: Command = {
  name: 'csi',
  summary: 'serve the CSI plugin (Identity, and Node and/or Controller) on a unix socket',
  usage: [
    'Usage: oras-runtime csi --endpoint unix:///csi/csi.sock --node-id <node> --cache-dir <dir> [options]',
    '       oras-runtime csi --endpoint unix:///csi/csi.sock --controller [--node-id <node> --cache-dir <dir>] [options]',
    '',
    'Mounts ORAS artifacts read-only into pods from a node cache keyed by source (registry and repository) and manifest digest.',
    'With --controller it serves the Controller service for external-provisioner (persistent volumes); with --node-id and',
    '--cache-dir as well, all three services on one socket.',
    '',
    '  --controller                      serve CreateVolume, DeleteVolume and ValidateVolumeCapabilities',
    '  --kubeconfig <file>               with --controller: the Kubernetes API, to read PVC annotations (default: in-cluster)',
    '  --driver-name <name>              the CSIDriver name (default csi.oras.land)',
    '  --metrics-port <n>                Prometheus /metrics (default 9809; with --controller alone, not served unless given)',
    '  --health-port <n>                 /healthz: a CSI Probe over the socket, as the livenessprobe sidecar does (default: not served)',
    '  --registration-dir <dir>          register with the kubelet, as node-driver-registrar does: serve <dir>/<driver-name>-reg.sock',
    '                                    (dir: the host\'s <kubelet dir>/plugins_registry); exits 1 when the kubelet reports failure',
    '  --kubelet-registration-path <p>   with --registration-dir: the host path of the CSI socket, which the kubelet connects to',
    '  --cache-max-size <n[Ki|Mi|Gi]>    unused entries are removed, least recently used first, above this much disk space of unpacked trees (default 20Gi)',
    '  --share-cache-across-namespaces   serve one cached copy to every namespace (default: one per namespace)',
    '  --kubelet-dir <dir>               the kubelet\'s root directory; targets must lie in its pods/ (default /var/lib/kubelet)',
    '  --publish-timeout <seconds>       NodePublishVolume answers DEADLINE_EXCEEDED after this, below the kubelet\'s 120;',
    '                                    the download goes on for the kubelet\'s retry (default 90)',
    '  --pull-timeout <seconds>          a download still unfinished after this is cancelled (default 1800)',
    '  --drain-timeout <duration>        after SIGTERM, keep serving while volumes are published, up to this (default 20s; 0: none)',
    '  --ca-file <file>                  trust the CA certificates (PEM) in <file> too, for registries with a private CA',
  ].join('\n'),
  run(args) {
    return loadBundled<{ runCsi(a: string[]): Promise<number> }>('oras-runtime-csi.cjs', '../csi/run').runCsi(args);
  },
};

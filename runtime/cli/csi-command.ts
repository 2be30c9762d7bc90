import { loadBundled } from './bundled';
import { Command } from './command';

export const csiCommand: Command = {
  name: 'csi',
  summary: 'serve the CSI node plugin (Identity and Node) on a unix socket',
  usage: [
    'Usage: oras-runtime csi --endpoint unix:///csi/csi.sock --node-id <node> --cache-dir <dir> [options]',
    '',
    'Mounts ORAS artifacts read-only into pods from a node cache keyed by manifest digest.',
    '',
    '  --driver-name <name>              the CSIDriver name (default csi.oras.land)',
    '  --metrics-port <n>                Prometheus /metrics (default 9809)',
    '  --cache-max-size <n[Ki|Mi|Gi]>    unused entries are removed, least recently used first, above this (default 20Gi)',
    '  --share-cache-across-namespaces   serve one cached copy to every namespace (default: one per namespace)',
  ].join('\n'),
  run(args) {
    return loadBundled<{ runCsi(a: string[]): Promise<number> }>('oras-runtime-csi.cjs', '../csi/run').runCsi(args);
  },
};

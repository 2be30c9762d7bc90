// Bundles the runtime CLI into one CommonJS file that runs on Node 20 and later.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const { version } = JSON.parse(readFileSync(join(here, '..', 'package.json'), 'utf8'));

// The webhook, the CSI plugin and the other Kubernetes API calls (with the Kubernetes client) are
// bundles of their own, loaded only by their commands, so that step containers start fast.
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: 'inline',
  sourcesContent: false,
  legalComments: 'none',
  define: { ORAS_RUNTIME_VERSION: JSON.stringify(version) },
  logLevel: 'warning',
};
await build({ ...common, entryPoints: [join(here, 'cli', 'main.ts')], outfile: join(here, 'build', 'oras-runtime.cjs') });
await build({ ...common, entryPoints: [join(here, 'webhook', 'run.ts')], outfile: join(here, 'build', 'oras-runtime-webhook.cjs'), sourcemap: false });
await build({ ...common, entryPoints: [join(here, 'csi', 'run.ts')], outfile: join(here, 'build', 'oras-runtime-csi.cjs'), sourcemap: false });
await build({ ...common, entryPoints: [join(here, 'kube', 'client.ts')], outfile: join(here, 'build', 'oras-runtime-kube.cjs'), sourcemap: false });

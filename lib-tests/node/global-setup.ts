import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Distribution } from '../util/distribution';
import { buildNodeImages, pushHubStandIns } from '../util/images';
import { KubeNode, NODE_PEERS } from '../util/kube-node';
import { findPeer } from '../util/peers';

/**
 * Brings the test node up once for every file under lib-tests/node: builds
 * and imports the images, starts the cluster, and hands its kubeconfig to the
 * tests in ORAS_KUBE_NODE. Without its peers it fails under CI=true and leaves
 * the tests to skip elsewhere.
 */
export default async function globalSetup(): Promise<void> {
  const missing = NODE_PEERS.filter((peer) => !findPeer(peer));
  if (process.getuid?.() !== 0) missing.push('root');
  if (missing.length > 0) {
    const message = `The Kubernetes node needs ${missing.join(', ')}. Install the test peers with "bash scripts/install-peers.sh" (as root).`;
    if (process.env.CI === 'true') throw new Error(message);
    console.warn(`Skipping the tests on a Kubernetes node. ${message}`);
    process.env.ORAS_KUBE_NODE_MISSING = message;
    return;
  }
  const started = Date.now();
  const images = mkdtempSync(join(tmpdir(), 'oras-node-images-'));
  try {
    const archives = buildNodeImages(images);
    // What containerd gets for docker.io: stand-ins of the images the prototype's examples name.
    const mirror = await Distribution.start();
    (globalThis as { orasHubMirror?: Distribution }).orasHubMirror = mirror;
    pushHubStandIns(mirror.host);
    const imagesMs = Date.now() - started;
    const node = await KubeNode.start({ imageArchives: archives, dockerHubMirror: mirror.host });
    (globalThis as { orasKubeNode?: KubeNode }).orasKubeNode = node;
    process.env.ORAS_KUBE_NODE = node.kubeconfig;
    console.log(`kube-node: images built in ${(imagesMs / 1000).toFixed(1)} s, node Ready ${((Date.now() - started - imagesMs) / 1000).toFixed(1)} s later`);
  } finally {
    rmSync(images, { recursive: true, force: true });
  }
}

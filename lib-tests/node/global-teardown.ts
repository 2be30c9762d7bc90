import { Distribution } from '../util/distribution';
import { KubeNode } from '../util/kube-node';

/**
 * Deletes every workload and removes what the node left on the machine, then
 * checks that nothing is left: a failed teardown fails the run.
 */
export default async function globalTeardown(): Promise<void> {
  const holder = globalThis as { orasKubeNode?: KubeNode; orasHubMirror?: Distribution };
  await holder.orasHubMirror?.stop();
  holder.orasHubMirror = undefined;
  if (!holder.orasKubeNode) return;
  await holder.orasKubeNode.stop();
  holder.orasKubeNode = undefined;
  const left = KubeNode.leftovers();
  if (left.length > 0) throw new Error(`The Kubernetes node left these behind: ${left.join('; ')}`);
}

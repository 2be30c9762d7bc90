import { AppsV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';

/** The pod template annotation whose change starts a new registry pod, and with it the garbage collection in its init container. */
export const COLLECT_ANNOTATION = 'oras.land/collect-garbage-at';

/**
 * Restarts the registry so that its init container collects the blobs no
 * manifest references: a change of the pod template (as `kubectl rollout
 * restart` does). The registry's Deployment uses the Recreate strategy, so
 * the old pod is gone before the collection starts and no push can race it.
 * Needs `patch` on that one Deployment. A bundle of its own (the Kubernetes
 * client is heavy), loaded by `oras-runtime prune --collect-garbage` only.
 */
export async function requestCollection(namespace: string, name: string, kubeconfig?: string, now = new Date()): Promise<void> {
  const kubeConfig = new KubeConfig();
  if (kubeconfig) kubeConfig.loadFromFile(kubeconfig);
  else kubeConfig.loadFromDefault();
  const apps = kubeConfig.makeApiClient(AppsV1Api);
  const body = { spec: { template: { metadata: { annotations: { [COLLECT_ANNOTATION]: now.toISOString() } } } } };
  try {
    await apps.patchNamespacedDeployment({ namespace, name, body }, setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch));
  } catch (err) {
    throw new Error(`cannot restart the registry Deployment ${namespace}/${name} for its garbage collection: ${(err as Error).message}. `
      + 'The prune job\'s Role must allow patch on that Deployment.', { cause: err });
  }
}

import { readFileSync } from 'node:fs';
import { ApiException, AppsV1Api, BatchV1Api, CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';

/**
 * The few Kubernetes API calls the runtime makes besides the webhook's: a
 * bundle of its own (the client is heavy), loaded only by the commands that
 * need it (`prune --collect-garbage`, oras-push of a step with dependents, and
 * the CSI controller reading a claim's annotations).
 */

/** The pod template annotation whose change starts a new registry pod, and with it the garbage collection in its init container. */
export const COLLECT_ANNOTATION = 'oras.land/collect-garbage-at';

/** Where the pod's service account token, CA and namespace are mounted. */
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

function kubeConfig(kubeconfig?: string): KubeConfig {
  const config = new KubeConfig();
  if (kubeconfig) config.loadFromFile(kubeconfig);
  else config.loadFromDefault();
  return config;
}

/**
 * Restarts the registry so that its init container collects the blobs no
 * manifest references: a change of the pod template (as `kubectl rollout
 * restart` does). The registry's Deployment uses the Recreate strategy, so
 * the old pod is gone before the collection starts and no push can race it.
 * Needs `patch` on that one Deployment.
 */
export async function requestCollection(namespace: string, name: string, kubeconfig?: string, now = new Date()): Promise<void> {
  const apps = kubeConfig(kubeconfig).makeApiClient(AppsV1Api);
  const body = { spec: { template: { metadata: { annotations: { [COLLECT_ANNOTATION]: now.toISOString() } } } } };
  try {
    await apps.patchNamespacedDeployment({ namespace, name, body }, setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch));
  } catch (err) {
    throw new Error(`cannot restart the registry Deployment ${namespace}/${name} for its garbage collection: ${(err as Error).message}. `
      + 'The prune job\'s Role must allow patch on that Deployment.', { cause: err });
  }
}

/** The namespace of this pod, from its service account mount. */
export function podNamespace(): string {
  return readFileSync(`${SERVICE_ACCOUNT_DIR}/namespace`, 'utf8').trim();
}

/**
 * A merge patch of one Job in this pod's namespace, with the pod's service
 * account. Resolves to 'missing' when the Job does not exist (yet); any
 * other refusal throws, naming the permission it needs.
 */
export async function patchJob(name: string, patch: Record<string, unknown>, where: { namespace?: string; kubeconfig?: string } = {}): Promise<'patched' | 'missing'> {
  const namespace = where.namespace ?? podNamespace();
  const batch = kubeConfig(where.kubeconfig).makeApiClient(BatchV1Api);
  try {
    await batch.patchNamespacedJob({ namespace, name, body: patch }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    return 'patched';
  } catch (err) {
    if (err instanceof ApiException && err.code === 404) return 'missing';
    const status = err instanceof ApiException ? ` (HTTP ${err.code})` : '';
    throw new Error(`cannot patch Job ${namespace}/${name}${status}: ${(err as Error).message.split('\n')[0]}. `
      + 'The workflow\'s Role (<workflow>-advance) must allow patch on Jobs for the pod\'s service account.', { cause: err });
  }
}

/** The annotations of a PersistentVolumeClaim, with the pod's service account (`get` on persistentvolumeclaims). */
export async function claimAnnotations(namespace: string, name: string, kubeconfig?: string): Promise<Record<string, string>> {
  const core = kubeConfig(kubeconfig).makeApiClient(CoreV1Api);
  try {
    return (await core.readNamespacedPersistentVolumeClaim({ namespace, name })).metadata?.annotations ?? {};
  } catch (err) {
    const status = err instanceof ApiException ? ` (HTTP ${err.code})` : '';
    throw new Error(`cannot read PersistentVolumeClaim ${namespace}/${name}${status}: ${(err as Error).message.split('\n')[0]}. `
      + 'The provisioner\'s ClusterRole must allow get on persistentvolumeclaims.', { cause: err });
  }
}

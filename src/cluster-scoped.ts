import { ApiObject, JsonPatch } from 'cdk8s';

/**
 * `object` without the namespace that cdk8s gives every object of a chart
 * with a namespace: a cluster-scoped kind (CSIDriver, StorageClass,
 * PersistentVolume, ClusterRole, webhook configurations) has none.
 * @internal
 */
export function clusterScoped<T extends ApiObject>(object: T): T {
  if (object.metadata.namespace !== undefined) object.addJsonPatch(JsonPatch.remove('/metadata/namespace'));
  return object;
}

import { ApiObject, JsonPatch } from 'cdk8s';

/**
 * `object`, a typed `k8s.Kube*` object, with its JSON patches applied to the
 * Kubernetes JSON it renders. cdk8s applies a typed object's patches before
 * it converts the props, which keeps only the schema's fields and reads
 * quantities and int-or-strings as `{ value }`: a patch that adds a field the
 * schema lacks, or sets `memory: '1Gi'`, would vanish. An escape hatch must not.
 * @internal
 */
export function patchable<T extends ApiObject>(object: T): T {
  const patches: JsonPatch[] = [];
  const render = object.toJson.bind(object);
  Object.defineProperty(object, 'addJsonPatch', { value: (...ops: JsonPatch[]) => { patches.push(...ops); } });
  Object.defineProperty(object, 'toJson', {
    value: () => (patches.length === 0 ? render() : inCdk8sOrder(JsonPatch.apply(render(), ...patches))),
  });
  return object;
}

/** Keys sorted at every level, as cdk8s writes them, and apiVersion, kind and metadata first. */
function inCdk8sOrder(json: Record<string, unknown>): Record<string, unknown> {
  const sorted = sortKeys(json) as Record<string, unknown>;
  const { apiVersion, kind, metadata, ...rest } = sorted;
  return { apiVersion, kind, metadata, ...rest };
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, sortKeys((value as Record<string, unknown>)[key])]));
}

import { Size, SizeRoundingBehavior } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';

/**
 * A memory or storage size as the API server writes it back: the largest
 * binary unit that divides it (1024Mi is "1Gi"). A manifest in that form
 * re-applies as "unchanged".
 */
export function quantity(size: Size): string {
  const mebibytes = size.toMebibytes({ rounding: SizeRoundingBehavior.NONE });
  if (!Number.isInteger(mebibytes)) return `${size.toKibibytes({ rounding: SizeRoundingBehavior.NONE })}Ki`;
  for (const [unit, factor] of [['Ti', 1024 * 1024], ['Gi', 1024]] as const) {
    if (mebibytes > 0 && mebibytes % factor === 0) return `${mebibytes / factor}${unit}`;
  }
  return `${mebibytes}Mi`;
}

/** Resources a construct uses for a container when the user gives none. */
export interface ResourceDefaults {
  readonly cpu: kplus.CpuResources;
  readonly memory: kplus.MemoryResources;
}

/**
 * The `resources` of a container: the user's, with cpu and memory falling back
 * to `defaults` each as a whole.
 */
export function renderResources(resources: kplus.ContainerResources | undefined, defaults: ResourceDefaults): Record<string, Record<string, string>> {
  const cpu = resources?.cpu ?? defaults.cpu;
  const memory = resources?.memory ?? defaults.memory;
  const storage = resources?.ephemeralStorage;
  const pick = (which: 'request' | 'limit') => ({
    ...(cpu[which] ? { cpu: cpu[which]!.amount } : {}),
    ...(memory[which] ? { memory: quantity(memory[which]!) } : {}),
    ...(storage?.[which] ? { 'ephemeral-storage': quantity(storage[which]!) } : {}),
  });
  return { requests: pick('request'), limits: pick('limit') };
}

/** The same as `renderResources`, for the typed `k8s.Kube*` objects. */
export function kubeResources(resources: kplus.ContainerResources | undefined, defaults: ResourceDefaults): kplus.k8s.ResourceRequirements {
  const rendered = renderResources(resources, defaults);
  const typed = (values: Record<string, string>) => Object.fromEntries(Object.entries(values).map(([k, v]) => [k, kplus.k8s.Quantity.fromString(v)]));
  return { requests: typed(rendered.requests), limits: typed(rendered.limits) };
}

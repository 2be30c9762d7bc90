import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A command that lives in a bundle of its own beside this one (so that its
 * heavy dependencies do not slow every other command), or in the TypeScript
 * source when running from it (tests).
 */
export function loadBundled<T>(bundle: string, source: string): T {
  const bundled = join(__dirname, bundle);
  const module = existsSync(bundled) ? bundled : source;
  // A computed path: esbuild leaves it out of the main bundle.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(module);
}

/** What the Kubernetes bundle (runtime/kube/client.ts, oras-runtime-kube.cjs) offers. */
export interface KubeCalls {
  requestCollection(namespace: string, name: string, kubeconfig?: string): Promise<void>;
  patchJob(name: string, patch: Record<string, unknown>, where?: { namespace?: string; kubeconfig?: string }): Promise<'patched' | 'missing'>;
  claimAnnotations(namespace: string, name: string, kubeconfig?: string): Promise<Record<string, string>>;
}

import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { stringify } from 'yaml';
import { requirePeer, run } from './peers';

/**
 * The Kubernetes version whose OpenAPI schemas the manifests must satisfy.
 * cdk8s-plus-27 targets 1.27; we check against a newer release clusters run today.
 */
export const KUBERNETES_VERSION = '1.30.0';

/**
 * Validates objects against the strict Kubernetes JSON schemas (unknown
 * fields are errors) with kubernetes-validate. Returns its error lines; empty means valid.
 */
export function schemaErrors(objects: unknown[]): string[] {
  if (objects.length === 0) throw new Error('schemaErrors: no objects to validate');
  const dir = mkdtempSync(join(tmpdir(), 'oras-schema-'));
  try {
    const file = join(dir, 'manifests.yaml');
    writeFileSync(file, objects.map((o) => stringify(o)).join('---\n'));
    const result = run(requirePeer('kubernetes-validate'), ['--strict', '--no-warn', '--quiet', '-k', KUBERNETES_VERSION, file]);
    const errors = result.output.split('\n').filter((line) => line.trim() !== '');
    if (result.status !== 0 && errors.length === 0) errors.push(`kubernetes-validate exited ${result.status} without output`);
    return errors.map((line) => line.replace(file, '<manifests>'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Fails the test with the validator's messages unless every object is valid. */
export function expectValidKubernetes(objects: unknown[]): void {
  expect(schemaErrors(objects)).toEqual([]);
}

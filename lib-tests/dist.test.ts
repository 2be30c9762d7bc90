import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { parseAllDocuments } from 'yaml';
import { synthExamples } from '../scripts/synth-examples';
import { expectValidKubernetes, schemaErrors } from './util/kubernetes-schema';
import { describeWithPeers, findPeer, run } from './util/peers';

const root = join(__dirname, '..');
const dist = join(root, 'dist');
const bundles = readdirSync(dist).filter((f) => f.endsWith('.yaml')).sort();
const objectsOf = (file: string) => parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJSON()).filter(Boolean);

describe('dist/ install bundles', () => {
  test('are what the examples synthesize today (run "npx projen synth:examples" when this fails)', () => {
    const fresh = mkdtempSync(join(tmpdir(), 'oras-dist-'));
    try {
      synthExamples(fresh);
      const freshFiles = readdirSync(fresh).filter((f) => f.endsWith('.yaml')).sort();
      expect(bundles).toEqual(freshFiles);
      for (const file of freshFiles) {
        expect({ file, yaml: readFileSync(join(dist, file), 'utf8') }).toEqual({ file, yaml: readFileSync(join(fresh, file), 'utf8') });
      }
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  test.each(bundles)('%s validates against the strict Kubernetes schemas', (file) => {
    expectValidKubernetes(objectsOf(join(dist, file)));
  });

  test('the schema check catches a misspelt field and a wrong type', () => {
    const [deployment] = objectsOf(join(dist, 'oras-registry.yaml')).filter((o: any) => o.kind === 'Deployment');
    const misspelt = structuredClone(deployment);
    misspelt.spec.template.spec.containers[0].imagePullPolciy = 'Always';
    expect(schemaErrors([misspelt]).join('\n')).toMatch(/'imagePullPolciy' was unexpected/);
    const wrongType = structuredClone(deployment);
    wrongType.spec.replicas = 'one';
    expect(schemaErrors([wrongType]).join('\n')).toMatch(/'one' is not of type 'integer'/);
  });
});

describeWithPeers(['kube-linter'], 'kube-linter', () => {
  const linter = findPeer('kube-linter')!;
  const config = join(root, '.kube-linter.yaml');

  test('dist/ passes every check not excluded (with a reason) in .kube-linter.yaml', () => {
    const result = run(linter, ['lint', '--config', config, dist]);
    expect(result.output).toContain('No lint errors found');
    expect(result.status).toBe(0);
  });

  test('the configuration still catches a writable root filesystem', () => {
    const dir = mkdtempSync(join(tmpdir(), 'oras-lint-'));
    try {
      const yaml = readFileSync(join(dist, 'oras-registry.yaml'), 'utf8').replace(/readOnlyRootFilesystem: true/g, 'readOnlyRootFilesystem: false');
      writeFileSync(join(dir, 'bad.yaml'), yaml);
      const result = run(linter, ['lint', '--config', config, dir]);
      expect(result.status).not.toBe(0);
      expect(result.output).toContain('check: no-read-only-root-fs');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

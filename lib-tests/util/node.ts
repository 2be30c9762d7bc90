import { randomBytes } from 'crypto';
import { KubeCluster } from './kube-node';

/**
 * `describe` for tests on the Kubernetes node that lib-tests/node/global-setup.ts
 * brings up. Without it the block fails under CI=true and is skipped elsewhere.
 */
export function describeOnNode(title: string, body: (cluster: KubeCluster) => void): void {
  const kubeconfig = process.env.ORAS_KUBE_NODE;
  if (kubeconfig) {
    describe(title, () => {
      const cluster = new KubeCluster(kubeconfig);
      beforeAll(() => cluster.settle());
      body(cluster);
    });
  } else if (process.env.CI === 'true') {
    describe(title, () => {
      test('the Kubernetes node is up', () => {
        throw new Error(process.env.ORAS_KUBE_NODE_MISSING ?? 'The Kubernetes node did not start; run these tests with "npx projen test:node".');
      });
    });
  } else {
    describe.skip(title, () => body(new KubeCluster('/nonexistent')));
  }
}

/**
 * A namespace of its own for the enclosing describe block, created before its
 * tests and deleted (and waited for) after them. Read `.name` inside tests.
 */
export function useNamespace(cluster: KubeCluster, prefix: string, labels: Record<string, string> = {}): { name: string } {
  const namespace = { name: `${prefix}-${randomBytes(3).toString('hex')}` };
  beforeAll(() => {
    cluster.kubectlOk(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace.name, labels } }) });
  });
  afterAll(() => {
    cluster.kubectl(['delete', 'namespace', namespace.name, '--wait=true', '--timeout=120s']);
  });
  return namespace;
}

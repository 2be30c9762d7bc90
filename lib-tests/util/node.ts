import { randomBytes } from 'crypto';
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { writeHtpasswd } from './distribution';
import { KubeCluster } from './kube-node';
import { CertificateSet } from '../../runtime/webhook/certificates';

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

/** A registry's htpasswd Secret for one user, and the dockerconfigjson Secret its clients log in with at `host`. */
export function loginSecrets(names: { htpasswd: string; login: string }, host: string, user: string, password: string): unknown[] {
  const dir = mkdtempSync(join(tmpdir(), 'oras-htpasswd-'));
  try {
    writeHtpasswd(join(dir, 'htpasswd'), { [user]: password });
    const auth = Buffer.from(`${user}:${password}`).toString('base64');
    return [
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: names.htpasswd }, stringData: { htpasswd: readFileSync(join(dir, 'htpasswd'), 'utf8') } },
      {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'kubernetes.io/dockerconfigjson',
        metadata: { name: names.login },
        stringData: { '.dockerconfigjson': JSON.stringify({ auths: { [host]: { auth } } }) },
      },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A kubernetes.io/tls Secret that holds its CA as ca.crt too, as cert-manager writes one. */
export function tlsSecretWithCa(name: string, certs: CertificateSet): unknown {
  const pem = (text: string) => Buffer.from(text).toString('base64');
  return { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name }, data: { 'tls.crt': pem(certs.cert), 'tls.key': pem(certs.key), 'ca.crt': pem(certs.caCert) } };
}

import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { PREFIX } from '../../runtime/webhook/annotations';
import { WRAPPER_SCRIPT_IN_SPEC } from '../../src/wrapper';
import { NODE_IMAGES } from '../util/images';
import { KubeCluster } from '../util/kube-node';
import { describeOnNode, useNamespace } from '../util/node';
import { requirePeer, run } from '../util/peers';

const root = join(__dirname, '..', '..');
const bundle = join(root, 'dist', 'oras-webhook.yaml');
const OPT_IN = 'oras.converged-computing.github.io/webhook';

describeOnNode('the admission webhook on a Kubernetes node (dist/oras-webhook.yaml)', (cluster: KubeCluster) => {
  const namespace = useNamespace(cluster, 'annotated', { [OPT_IN]: 'enabled' });
  let address = '';

  const annotations = (values: Record<string, string>) => Object.fromEntries(Object.entries({ 'oras-cache': 'oras', ...values }).map(([k, v]) => [PREFIX + k, v]));
  const annotatedPod = (name: string, values: Record<string, string>, command: string[]) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: namespace.name, annotations: annotations(values) },
    spec: { restartPolicy: 'Never', containers: [{ name: 'app', image: NODE_IMAGES.busybox, command, workingDir: '/data' }] },
  });

  /** Waits until the pod has finished; returns its phase. */
  const podPhase = (name: string) => cluster.until(`pod ${name} to finish`, 120_000, () => {
    const phase = cluster.getJson(['get', 'pod', '-n', namespace.name, name]).status.phase;
    return ['Succeeded', 'Failed'].includes(phase) ? phase : undefined;
  }).catch((err) => { throw new Error(`${err.message}\n${cluster.describe(namespace.name)}`); });

  function contentOf(reference: string, file: string): string {
    const dir = mkdtempSync(join(tmpdir(), 'oras-node-'));
    try {
      const pulled = run(requirePeer('oras'), ['pull', '--plain-http', `${address}/${reference}`, '-o', dir]);
      if (pulled.status !== 0) throw new Error(`oras pull ${reference}: ${pulled.output}`);
      return readFileSync(join(dir, file), 'utf8');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  beforeAll(async () => {
    cluster.kubectlOk(['apply', '-f', bundle]);
    address = await cluster.deployRegistry(namespace.name, 180);
    cluster.kubectlOk(['rollout', 'status', '-n', 'oras-system', 'deployment/oras-webhook', '--timeout=180s'], { timeoutMs: 190_000 });
  });

  afterAll(() => {
    cluster.kubectl(['delete', '-f', bundle, '--wait=true', '--timeout=120s']);
  });

  test('self-managed TLS: the CA is in the configuration and the API server trusts the Service', () => {
    const config = cluster.getJson(['get', 'mutatingwebhookconfiguration', 'oras-webhook']);
    const caBundle = Buffer.from(config.webhooks[0].clientConfig.caBundle, 'base64').toString();
    expect(caBundle).toContain('BEGIN CERTIFICATE');
    const secret = cluster.getJson(['get', 'secret', '-n', 'oras-system', 'oras-webhook-tls']);
    expect(Object.keys(secret.data)).toEqual(expect.arrayContaining(['tls.crt', 'tls.key']));
  });

  test('an annotated Pod runs and pushes its output to the oras-cache registry', async () => {
    const tag = `t${Date.now().toString(36)}`;
    const pod = annotatedPod('hello', { 'output-uri': `dinosaur/hello-world:${tag}`, 'output-path': '/data' },
      ['sh', '-c', 'echo "hello from the operator example" > /data/hello.txt']);
    const created = cluster.apply({ objects: [pod] });
    expect(created).toContain('pod/hello created');
    const stored = cluster.getJson(['get', 'pod', '-n', namespace.name, 'hello']);
    expect(stored.spec.containers.map((c: any) => c.name)).toEqual(['app', 'oras-push']);
    expect(stored.spec.containers[0].command.slice(0, 4)).toEqual(['/bin/sh', '-c', WRAPPER_SCRIPT_IN_SPEC, 'oras-wrap']);
    expect(await podPhase('hello')).toBe('Succeeded');
    expect(contentOf(`dinosaur/hello-world:${tag}`, 'hello.txt')).toBe('hello from the operator example\n');
  });

  test('an annotated Job (annotations on the Job) reads an input and pipes its output', async () => {
    const tag = `t${Date.now().toString(36)}`;
    cluster.apply({ objects: [annotatedPod('producer', { 'output-uri': `dinosaur/input:${tag}` }, ['sh', '-c', 'echo first > /data/one.txt'])] });
    cluster.apply({
      objects: [{
        apiVersion: 'batch/v1',
        kind: 'Job',
        metadata: {
          name: 'piped',
          namespace: namespace.name,
          annotations: annotations({ 'input-uri': `dinosaur/input:${tag}`, 'input-path': '/inputs', 'output-uri': `dinosaur/piped:${tag}`, 'output-pipe': 'stdout.txt' }),
        },
        spec: {
          backoffLimit: 0,
          template: { spec: { restartPolicy: 'Never', containers: [{ name: 'app', image: NODE_IMAGES.busybox, command: ['cat', '/inputs/one.txt'], workingDir: '/data' }] } },
        },
      }],
    });
    expect(await cluster.jobOutcomes(namespace.name, ['piped'], 120_000)).toEqual({ piped: 'Complete' });
    expect(cluster.kubectlOk(['logs', '-n', namespace.name, 'job/piped', '-c', 'app'])).toBe('first\n');
    expect(contentOf(`dinosaur/piped:${tag}`, 'stdout.txt')).toBe('first\n');
  });

  test('two pods produce :one and :two; a third, created first, reads input-uri_1 and input-uri_2', async () => {
    const repo = `dinosaur/pair${Date.now().toString(36)}`;
    cluster.apply({
      objects: [
        annotatedPod('reader', { 'input-uri_1': `${repo}:one`, 'input-uri_2': `${repo}:two`, 'input-path': '/inputs', 'output-uri': `${repo}:both`, 'output-path': '/data' },
          ['sh', '-c', 'cat /inputs/one.txt /inputs/two.txt | tee /data/both.txt']),
        annotatedPod('one', { 'output-uri': `${repo}:one` }, ['sh', '-c', 'echo first > /data/one.txt']),
        annotatedPod('two', { 'output-uri': `${repo}:two` }, ['sh', '-c', 'echo second > /data/two.txt']),
      ],
    });
    expect(await Promise.all(['reader', 'one', 'two'].map(podPhase))).toEqual(['Succeeded', 'Succeeded', 'Succeeded']);
    expect(cluster.kubectlOk(['logs', '-n', namespace.name, 'reader', '-c', 'app'])).toBe('first\nsecond\n');
    // oras-pull comes first in the pod, but kubectl picks the app container.
    expect(cluster.kubectlOk(['logs', '-n', namespace.name, 'reader'])).toBe('first\nsecond\n');
    expect(contentOf(`${repo}:both`, 'both.txt')).toBe('first\nsecond\n');
  });

  test('with one replica deleted, admission keeps working', async () => {
    const replicas = cluster.getJson(['get', 'pods', '-n', 'oras-system', '-l', 'app.kubernetes.io/name=oras-webhook']).items;
    expect(replicas).toHaveLength(2);
    cluster.kubectlOk(['delete', 'pod', '-n', 'oras-system', replicas[0].metadata.name, '--wait=false']);
    // Pods created while that replica terminates and its successor starts: every one must be prepared.
    for (let i = 0; i < 10; i++) {
      const name = `during-${i}`;
      cluster.apply({ objects: [annotatedPod(name, { 'output-uri': `dinosaur/during:${i}` }, ['true'])] });
      const pod = cluster.getJson(['get', 'pod', '-n', namespace.name, name]);
      expect({ name, prepared: pod.spec.containers.some((c: any) => c.name === 'oras-push') }).toEqual({ name, prepared: true });
      await new Promise((r) => setTimeout(r, 500));
    }
    cluster.kubectlOk(['rollout', 'status', '-n', 'oras-system', 'deployment/oras-webhook', '--timeout=120s'], { timeoutMs: 130_000 });
    expect(cluster.getJson(['get', 'pods', '-n', 'oras-system', '-l', 'app.kubernetes.io/name=oras-webhook']).items
      .filter((p: any) => p.status.phase === 'Running')).toHaveLength(2);
  });
});

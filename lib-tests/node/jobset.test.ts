import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { parseAllDocuments, stringify } from 'yaml';
import { PREFIX } from '../../runtime/webhook/annotations';
import { issueCertificates } from '../../runtime/webhook/certificates';
import { freePort } from '../util/distribution';
import { NODE_IMAGES } from '../util/images';
import { KubeCluster } from '../util/kube-node';
import { describeOnNode, useNamespace } from '../util/node';
import { requirePeer, run } from '../util/peers';
import { Child, startChild, stopChild, waitForChild } from '../util/processes';

const root = join(__dirname, '..', '..');
const webhookBundle = join(root, 'dist', 'oras-webhook.yaml');

/**
 * The JobSet controller (sigs.k8s.io/jobset v0.10.1, built by
 * scripts/install-peers.sh) outside the cluster, with the node's admin
 * kubeconfig, and its JobSet webhooks (defaulting and validation, as its
 * release registers them) served on 127.0.0.1 with a certificate of this
 * test. Returns the process and those webhook configurations.
 */
async function startJobSetController(kubeconfig: string, dir: string): Promise<{ controller: Child; webhooks: unknown[] }> {
  const certs = issueCertificates({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  writeFileSync(join(dir, 'tls.crt'), certs.cert);
  writeFileSync(join(dir, 'tls.key'), certs.key);
  const healthPort = await freePort();
  const webhookPort = await freePort();
  writeFileSync(join(dir, 'config.yaml'), stringify({
    apiVersion: 'config.jobset.x-k8s.io/v1alpha1',
    kind: 'Configuration',
    internalCertManagement: { enable: false },
    webhook: { host: '127.0.0.1', port: webhookPort, certDir: dir },
    metrics: { bindAddress: '0' },
    health: { healthProbeBindAddress: `127.0.0.1:${healthPort}` },
    leaderElection: { leaderElect: false },
  }));
  const controller = startChild('jobset-controller', requirePeer('jobset-controller'), ['--config', join(dir, 'config.yaml')], {
    env: { PATH: process.env.PATH, HOME: dir, KUBECONFIG: kubeconfig },
    logFile: join(dir, 'controller.log'),
  });
  await waitForChild(controller, 'the jobset controller to be ready', Date.now() + 60_000, async () => {
    const ready = await fetch(`http://127.0.0.1:${healthPort}/readyz`).catch(() => undefined);
    return ready?.status === 200;
  });
  const webhook = (kind: 'Mutating' | 'Validating', name: string, path: string, operations: string[]) => ({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: `${kind}WebhookConfiguration`,
    metadata: { name: `jobset-test-${kind.toLowerCase()}` },
    webhooks: [{
      name,
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      failurePolicy: 'Fail',
      clientConfig: { url: `https://127.0.0.1:${webhookPort}${path}`, caBundle: Buffer.from(certs.caCert).toString('base64') },
      rules: [{ apiGroups: ['jobset.x-k8s.io'], apiVersions: ['v1alpha2'], resources: ['jobsets'], operations }],
    }],
  });
  return {
    controller,
    webhooks: [
      webhook('Mutating', 'mjobset.kb.io', '/mutate-jobset-x-k8s-io-v1alpha2-jobset', ['CREATE']),
      webhook('Validating', 'vjobset.kb.io', '/validate-jobset-x-k8s-io-v1alpha2-jobset', ['CREATE', 'UPDATE']),
    ],
  };
}

describeOnNode('JobSets on a Kubernetes node, with the jobset controller v0.10.1', (cluster: KubeCluster) => {
  const namespace = useNamespace(cluster, 'jobset', { 'oras.converged-computing.github.io/webhook': 'enabled' });
  const crd = parseAllDocuments(run(requirePeer('jobset-crd'), []).stdout).map((d) => d.toJSON()).filter(Boolean)[0];
  const dir = mkdtempSync(join(tmpdir(), 'oras-jobset-'));
  let controller: Child | undefined;
  let webhooks: unknown[] = [];
  let address = '';

  beforeAll(async () => {
    // Server-side: the CRD is larger than the annotation client-side apply keeps.
    cluster.kubectlOk(['apply', '--server-side', '-f', '-'], { input: JSON.stringify(crd) });
    // kubectl wait gives up on an object without conditions yet: poll.
    await cluster.until('the JobSet CRD to be established', 60_000, () => (cluster.getJson(['get', 'crd', crd.metadata.name]).status?.conditions ?? [])
      .some((c: any) => c.type === 'Established' && c.status === 'True') || undefined);
    ({ controller, webhooks } = await startJobSetController(cluster.kubeconfig, dir));
    cluster.apply({ objects: webhooks });
    cluster.kubectlOk(['apply', '-f', webhookBundle]);
    address = await cluster.deployRegistry(namespace.name, 180);
    cluster.kubectlOk(['rollout', 'status', '-n', 'oras-system', 'deployment/oras-webhook', '--timeout=180s'], { timeoutMs: 190_000 });
    // The API server calls it through the Service: wait until kube-proxy routes it.
    await cluster.serviceAddress('oras-system', 'oras-webhook', 443);
  }, 400_000);

  afterAll(async () => {
    cluster.kubectl(['delete', 'jobsets', '--all', '-n', namespace.name, '--wait=true', '--timeout=60s']);
    cluster.kubectl(['delete', '-f', webhookBundle, '--wait=true', '--timeout=120s']);
    if (webhooks.length > 0) cluster.kubectl(['delete', '-f', '-', '--wait=true'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: webhooks }) });
    if (controller) await stopChild(controller.process);
    cluster.kubectl(['delete', 'crd', crd.metadata.name, '--wait=true', '--timeout=60s']);
    rmSync(dir, { recursive: true, force: true });
  }, 300_000);

  test('a JobSet with two replicated Jobs runs, each pushing its own output', async () => {
    const tag = `t${Date.now().toString(36)}`;
    const replicated = (name: string, text: string) => ({
      name,
      replicas: 1,
      template: {
        // Each replicated Job pushes to its own tag; the JobSet's annotations apply to both.
        metadata: { annotations: { [`${PREFIX}output-uri`]: `dinosaur/jobset-${name}:${tag}`, [`${PREFIX}output-path`]: 'result.txt' } },
        spec: {
          backoffLimit: 0,
          template: { spec: { restartPolicy: 'Never', containers: [{ name, image: NODE_IMAGES.busybox, workingDir: '/work', command: ['sh', '-c', `echo ${text} > result.txt`] }] } },
        },
      },
    });
    cluster.apply({
      namespace: namespace.name,
      objects: [{
        apiVersion: 'jobset.x-k8s.io/v1alpha2',
        kind: 'JobSet',
        metadata: { name: 'breakfast', annotations: { [`${PREFIX}oras-cache`]: 'oras' } },
        spec: { replicatedJobs: [replicated('eggs', 'scrambled'), replicated('toast', 'buttered')] },
      }],
    });
    const stored = cluster.getJson(['get', 'jobset', '-n', namespace.name, 'breakfast']);
    expect(stored.spec.replicatedJobs.map((j: any) => j.template.spec.template.spec.containers.map((c: any) => c.name))).toEqual([['eggs', 'oras-push'], ['toast', 'oras-push']]);

    await cluster.until('JobSet breakfast to complete', 180_000, () => {
      const conditions = cluster.getJson(['get', 'jobset', '-n', namespace.name, 'breakfast']).status?.conditions ?? [];
      if (conditions.some((c: any) => c.type === 'Failed' && c.status === 'True')) throw new Error(`JobSet breakfast failed: ${JSON.stringify(conditions)}`);
      return conditions.some((c: any) => c.type === 'Completed' && c.status === 'True') || undefined;
    }).catch((err) => { throw new Error(`${err.message}\n${cluster.describe(namespace.name)}\n${controller?.output().slice(-5000)}`); });

    const pulled = (name: string) => {
      const out = mkdtempSync(join(tmpdir(), 'oras-jobset-pull-'));
      try {
        const result = run(requirePeer('oras'), ['pull', '--plain-http', `${address}/dinosaur/jobset-${name}:${tag}`, '-o', out]);
        if (result.status !== 0) throw new Error(result.output);
        return readFileSync(join(out, 'result.txt'), 'utf8');
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    };
    expect([pulled('eggs'), pulled('toast')]).toEqual(['scrambled\n', 'buttered\n']);
    // The Jobs the controller made carry the prepared templates: the webhook left them as they were.
    const jobs = cluster.getJson(['get', 'jobs', '-n', namespace.name]).items.map((j: any) => j.metadata.name).sort();
    expect(jobs).toEqual(['breakfast-eggs-0', 'breakfast-toast-0']);
  });
});

import { ChildProcess, spawn } from 'child_process';
import { X509Certificate } from 'crypto';
import { readdirSync, readFileSync } from 'fs';
import { join } from 'path';
import { parseAllDocuments } from 'yaml';
import { PREFIX } from '../../runtime/webhook/annotations';
import { issueCertificates } from '../../runtime/webhook/certificates';
import { WRAPPER_SCRIPT_IN_SPEC } from '../../src/wrapper';
import { freePort } from '../util/distribution';
import { request } from '../util/http';
import { KubeApiServer } from '../util/kube-apiserver';
import { describeWithPeers, requirePeer, run } from '../util/peers';

const root = join(__dirname, '..', '..');
const bundle = join(root, 'runtime', 'build', 'oras-runtime.cjs');
const CONFIG = 'oras-webhook-test';
const SECRET = 'oras-webhook-tls';

/** The REST collection of an object. */
function collection(object: any, namespace: string): string {
  const [group, version] = object.apiVersion.includes('/') ? object.apiVersion.split('/') : ['', object.apiVersion];
  const kind = object.kind.toLowerCase();
  const plural = kind.endsWith('s') ? `${kind}es` : `${kind}s`;
  const clusterScoped = ['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'MutatingWebhookConfiguration', 'CSIDriver', 'StorageClass', 'PersistentVolume']
    .includes(object.kind);
  const prefix = group ? `/apis/${group}/${version}` : `/api/${version}`;
  return clusterScoped ? `${prefix}/${plural}` : `${prefix}/namespaces/${object.metadata.namespace ?? namespace}/${plural}`;
}

/**
 * The webhook registered in a real kube-apiserver (built from the Go module
 * proxy), with self-managed TLS: it stores its certificates in a Secret and
 * writes its CA into its own configuration, and the API server calls it.
 */
describeWithPeers(['kube-apiserver', 'etcd', 'jobset-crd'], 'the webhook in a real kube-apiserver', () => {
  let kube: KubeApiServer;
  let webhook: ChildProcess;
  let webhookLog = '';
  let port: number;

  const api = (method: string, path: string, body?: unknown) => kube.request(method, path, body);

  function startWebhook(): ChildProcess {
    const child = spawn(process.execPath, [bundle, 'webhook', '--port', String(port), '--kubeconfig', kube.kubeconfig, '--namespace', 'oras-system',
      '--secret', SECRET, '--webhook-config', CONFIG, '--service', 'oras-webhook', '--tls-san', '127.0.0.1',
      '--runtime-image', 'ghcr.io/cdk8s-oras/oras-runtime:9.9.9'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => { webhookLog += d; });
    child.stderr!.on('data', (d) => { webhookLog += d; });
    return child;
  }

  beforeAll(async () => {
    kube = await KubeApiServer.start();
    port = await freePort();
    for (const name of ['oras-system', 'team']) {
      const created = await api('POST', '/api/v1/namespaces', {
        apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: name === 'team' ? { 'oras.converged-computing.github.io/webhook': 'enabled' } : {} },
      });
      expect(created.status).toBe(201);
    }
    const config = await api('POST', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations', {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name: CONFIG },
      webhooks: [{
        name: 'test.oras.converged-computing.github.io',
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        timeoutSeconds: 5,
        failurePolicy: 'Fail',
        reinvocationPolicy: 'IfNeeded',
        clientConfig: { url: `https://127.0.0.1:${port}/mutate` },
        rules: [
          { apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], operations: ['CREATE'] },
          { apiGroups: ['batch'], apiVersions: ['v1'], resources: ['jobs'], operations: ['CREATE'] },
          { apiGroups: ['jobset.x-k8s.io'], apiVersions: ['v1alpha2'], resources: ['jobsets'], operations: ['CREATE'] },
        ],
        namespaceSelector: { matchLabels: { 'oras.converged-computing.github.io/webhook': 'enabled' } },
      }],
    });
    expect(config.status).toBe(201);
    // The JobSet CRD of sigs.k8s.io/jobset, as its release installs it.
    const crd = parseAllDocuments(run(requirePeer('jobset-crd'), []).stdout).map((d) => d.toJSON()).filter(Boolean)[0];
    expect((await api('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd)).status).toBe(201);
    for (let i = 0; i < 200; i++) {
      const status = (await api('GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`)).json.status;
      if (status?.conditions?.some((c: any) => c.type === 'Established' && c.status === 'True')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    webhook = startWebhook();
    for (let i = 0; i < 200 && !webhookLog.includes('"event":"listening"'); i++) await new Promise((r) => setTimeout(r, 50));
    if (!webhookLog.includes('"event":"listening"')) throw new Error(`the webhook did not start:\n${webhookLog}`);
  }, 180_000);

  afterAll(async () => {
    webhook?.kill('SIGTERM');
    await kube?.stop();
  });

  test('self-managed TLS: the Secret holds the certificates and the configuration trusts its CA', async () => {
    const secret = (await api('GET', `/api/v1/namespaces/oras-system/secrets/${SECRET}`)).json;
    expect(Object.keys(secret.data).sort()).toEqual(['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
    const config = (await api('GET', `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${CONFIG}`)).json;
    expect(config.webhooks[0].clientConfig.caBundle).toBe(secret.data['ca.crt']);
    const ca = Buffer.from(secret.data['ca.crt'], 'base64').toString();
    expect((await request(`https://127.0.0.1:${port}/healthz`, { ca })).status).toBe(200);
  });

  test('a second replica serves the same certificate', async () => {
    const before = (await api('GET', `/api/v1/namespaces/oras-system/secrets/${SECRET}`)).json;
    const savedPort = port;
    port = await freePort();
    const second = startWebhook();
    try {
      for (let i = 0; i < 200 && (webhookLog.match(/"event":"listening"/g) ?? []).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
      expect((webhookLog.match(/"event":"listening"/g) ?? []).length).toBe(2);
      const after = (await api('GET', `/api/v1/namespaces/oras-system/secrets/${SECRET}`)).json;
      expect(after.data['tls.crt']).toBe(before.data['tls.crt']);
      expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    } finally {
      second.kill('SIGTERM');
      port = savedPort;
    }
  });

  test('a certificate close to expiry is renewed at start, keeping the CA', async () => {
    const secretPath = `/api/v1/namespaces/oras-system/secrets/${SECRET}`;
    const current = (await api('GET', secretPath)).json;
    const ca = { cert: Buffer.from(current.data['ca.crt'], 'base64').toString(), key: Buffer.from(current.data['ca.key'], 'base64').toString() };
    // Issued 350 days ago: 15 days left, inside the 30-day renewal window.
    const old = issueCertificates({ dnsNames: ['oras-webhook.oras-system.svc', 'oras-webhook.oras-system.svc.cluster.local'], ipAddresses: ['127.0.0.1'] },
      ca, new Date(Date.now() - 350 * 24 * 3600 * 1000));
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    current.data = { 'ca.crt': b64(old.caCert), 'ca.key': b64(old.caKey), 'tls.crt': b64(old.cert), 'tls.key': b64(old.key) };
    expect((await api('PUT', secretPath, current)).status).toBe(200);

    const savedPort = port;
    port = await freePort();
    const renewing = startWebhook();
    try {
      for (let i = 0; i < 200 && !webhookLog.includes('issuing a serving certificate: the serving certificate expires'); i++) await new Promise((r) => setTimeout(r, 50));
      for (let i = 0; i < 100; i++) {
        const renewed = (await api('GET', secretPath)).json;
        if (renewed.data['tls.crt'] !== b64(old.cert)) {
          expect(renewed.data['ca.crt']).toBe(b64(old.caCert));
          const cert = new X509Certificate(Buffer.from(renewed.data['tls.crt'], 'base64'));
          expect(new Date(cert.validTo).getTime() - Date.now()).toBeGreaterThan(300 * 24 * 3600 * 1000);
          return;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`the certificate was not renewed:\n${webhookLog}`);
    } finally {
      renewing.kill('SIGTERM');
      port = savedPort;
    }
  });

  test('an annotated Pod is stored prepared', async () => {
    const created = await api('POST', '/api/v1/namespaces/team/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'annotated',
        annotations: { [`${PREFIX}oras-cache`]: 'orascache', [`${PREFIX}output-uri`]: 'dinosaur/out:one', [`${PREFIX}input-uri`]: 'dinosaur/in:one' },
      },
      spec: { containers: [{ name: 'app', image: 'busybox:1.36.1', command: ['sh', '-c', 'date > /data/date.txt'], workingDir: '/data' }] },
    });
    expect(created.status).toBe(201);
    const stored = (await api('GET', '/api/v1/namespaces/team/pods/annotated')).json;
    expect(stored.spec.initContainers).toBeUndefined();
    expect(stored.spec.containers.map((c: any) => c.name)).toEqual(['oras-pull', 'app', 'oras-push']);
    expect(stored.spec.shareProcessNamespace).toBe(true);
    expect(stored.spec.containers[1].command.slice(0, 4)).toEqual(['/bin/sh', '-c', WRAPPER_SCRIPT_IN_SPEC, 'oras-wrap']);
    expect(stored.metadata.annotations['kubectl.kubernetes.io/default-container']).toBe('app');
  });

  test('an annotated Job is stored with a prepared template', async () => {
    const created = await api('POST', '/apis/batch/v1/namespaces/team/jobs', {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'annotated-job', annotations: { [`${PREFIX}oras-cache`]: 'orascache', [`${PREFIX}output-uri`]: 'dinosaur/job:one', [`${PREFIX}output-pipe`]: 'out.txt' } },
      spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'app', image: 'busybox:1.36.1', command: ['echo', 'hi'], workingDir: '/data' }] } } },
    });
    expect(created.status).toBe(201);
    const stored = (await api('GET', '/apis/batch/v1/namespaces/team/jobs/annotated-job')).json;
    expect(stored.spec.template.spec.containers.map((c: any) => c.name)).toEqual(['app', 'oras-push']);
    expect(stored.spec.template.metadata.annotations).toEqual({ 'kubectl.kubernetes.io/default-container': 'app' });
    expect(stored.spec.template.spec.containers[0].command.slice(4)).toEqual(['--state', '/oras/state', '--stdout', 'out.txt', '--copy-out', '.=/oras/output/app', '--', 'echo', 'hi']);
  });

  test('a JobSet is stored with every replicated Job\'s pod template prepared, and the warnings reach the client', async () => {
    const replicated = (name: string, containers: unknown[]) => ({ name, replicas: 2, template: { spec: { template: { spec: { restartPolicy: 'Never', containers } } } } });
    const created = await api('POST', '/apis/jobset.x-k8s.io/v1alpha2/namespaces/team/jobsets', {
      apiVersion: 'jobset.x-k8s.io/v1alpha2',
      kind: 'JobSet',
      metadata: { name: 'pancakes', annotations: { [`${PREFIX}oras-cache`]: 'orascache', [`${PREFIX}output-uri`]: 'dinosaur/jobset:one', [`${PREFIX}output-path`]: 'out.txt' } },
      spec: {
        replicatedJobs: [
          replicated('leader', [{ name: 'leader', image: 'busybox:1.36.1', command: ['sh', '-c', 'echo lead > out.txt'] }]),
          replicated('workers', [{ name: 'worker', image: 'busybox:1.36.1', command: ['sh', '-c', 'echo work > out.txt'] }, { name: 'side', image: 'busybox:1.36.1', command: ['true'] }]),
        ],
      },
    });
    expect(created.status).toBe(201);
    expect(created.headers.warning).toMatch(/replicated job \\?"pancakes-workers\\?": the pod has 2 containers/);
    const stored = (await api('GET', '/apis/jobset.x-k8s.io/v1alpha2/namespaces/team/jobsets/pancakes')).json;
    const templates = stored.spec.replicatedJobs.map((job: any) => job.template.spec.template);
    expect(templates.map((t: any) => t.spec.containers.map((c: any) => c.name))).toEqual([['leader', 'oras-push'], ['worker', 'side', 'oras-push']]);
    expect(templates.map((t: any) => t.metadata.annotations['kubectl.kubernetes.io/default-container'])).toEqual(['leader', 'worker']);
    const pushes = templates.map((t: any) => t.spec.containers.find((c: any) => c.name === 'oras-push').args);
    expect(pushes[0]).toEqual(expect.arrayContaining(['--to', 'orascache:5000/dinosaur/jobset:one', '--annotation', 'org.cdk8s-oras.step.name=pancakes-leader']));
  });

  test('a Pod without annotations is stored as it came; bad annotations are refused with the fix', async () => {
    await api('POST', '/api/v1/namespaces/team/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'plain' }, spec: { containers: [{ name: 'a', image: 'busybox:1.36.1' }] } });
    expect((await api('GET', '/api/v1/namespaces/team/pods/plain')).json.spec.initContainers).toBeUndefined();
    const refused = await api('POST', '/api/v1/namespaces/team/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'bad', annotations: { [`${PREFIX}oras-cache`]: 'c', [`${PREFIX}output-uri`]: 'x/y:1', [`${PREFIX}container`]: 'zzz' } },
      spec: { containers: [{ name: 'a', image: 'busybox:1.36.1', command: ['x'], workingDir: '/w' }, { name: 'b', image: 'busybox:1.36.1' }] },
    });
    expect(refused.status).toBe(400);
    expect(refused.json.message).toMatch(/admission webhook "test\.oras\.converged-computing\.github\.io" denied the request: cdk8s-oras: .*container names "zzz", but the pod has "a", "b"/);
  });

  test('every manifest in dist/ passes a strict server-side dry run', async () => {
    const dist = join(root, 'dist');
    const checked: string[] = [];
    for (const file of readdirSync(dist).filter((f) => f.endsWith('.yaml')).sort()) {
      for (const object of parseAllDocuments(readFileSync(join(dist, file), 'utf8')).map((d) => d.toJSON()).filter(Boolean)) {
        if (object.kind === 'Namespace') {
          // Created for real: the objects in it are checked against it.
          const created = await api('POST', '/api/v1/namespaces', object);
          expect([201, 409]).toContain(created.status);
          continue;
        }
        const result = await api('POST', `${collection(object, 'team')}?dryRun=All&fieldValidation=Strict`, object);
        expect({ file, object: `${object.kind}/${object.metadata.name}`, status: result.status, message: result.json?.message })
          .toEqual({ file, object: `${object.kind}/${object.metadata.name}`, status: 201, message: undefined });
        checked.push(`${object.kind}/${object.metadata.name}`);
      }
    }
    expect(checked.length).toBeGreaterThanOrEqual(15);
  });
});

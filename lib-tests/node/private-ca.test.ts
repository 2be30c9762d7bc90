import { randomBytes } from 'crypto';
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Chart, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { PREFIX } from '../../runtime/webhook/annotations';
import { issueCertificates } from '../../runtime/webhook/certificates';
import { CaBundle, OrasCsiDriver, OrasRegistry, OrasRuntimeImage, OrasWorkflow } from '../../src';
import { NODE_IMAGES } from '../util/images';
import { KubeCluster } from '../util/kube-node';
import { describeOnNode, loginSecrets, tlsSecretWithCa, useNamespace } from '../util/node';
import { requirePeer, run } from '../util/peers';

const root = join(__dirname, '..', '..');
const webhookBundle = join(root, 'dist', 'oras-webhook.yaml');
const CSI_NAMESPACE = 'oras-csi';

describeOnNode('an in-cluster registry with TLS from a private CA, trusted through CaBundle', (cluster: KubeCluster) => {
  const namespace = useNamespace(cluster, 'private-ca', { 'oras.converged-computing.github.io/webhook': 'enabled' });
  let csi: unknown[] = [];

  const podPhase = (name: string) => cluster.until(`pod ${name} to finish`, 180_000, () => {
    const phase = cluster.getJson(['get', 'pod', '-n', namespace.name, name]).status.phase;
    return ['Succeeded', 'Failed'].includes(phase) ? phase : undefined;
  }).catch((err) => { throw new Error(`${err.message}\n${cluster.describe(namespace.name)}\n${cluster.describe(CSI_NAMESPACE)}`); });

  /** A chart in the test's namespace: the registry's host is then oras.<namespace>.svc:5000, which the CSI plugin resolves too. */
  const namespaced = () => new Chart(Testing.app(), 'ca', { namespace: namespace.name });

  /** The registry `oras` with a certificate that a CA of this test signed, and that CA in a ConfigMap. */
  function tlsRegistry(chart: Chart): OrasRegistry {
    const tlsSecret = kplus.Secret.fromSecretName(chart, 'Tls', 'oras-tls');
    return new OrasRegistry(chart, 'Oras', { name: 'oras', tlsSecret, caBundle: CaBundle.fromSecret(tlsSecret) });
  }

  beforeAll(async () => {
    const ns = namespace.name;
    const certs = issueCertificates({ dnsNames: ['oras', `oras.${ns}`, `oras.${ns}.svc`, `oras.${ns}.svc.cluster.local`], ipAddresses: [] });
    cluster.apply({
      namespace: ns,
      objects: [
        tlsSecretWithCa('oras-tls', certs),
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'registry-ca' }, data: { 'ca.crt': certs.caCert } },
      ],
    });
    const chart = namespaced();
    tlsRegistry(chart);
    cluster.apply({ namespace: ns, objects: Testing.synth(chart) });
    cluster.kubectlOk(['rollout', 'status', '-n', ns, 'deployment/oras', '--timeout=120s'], { timeoutMs: 130_000 });

    // The CSI plugin, trusting the same CA from a ConfigMap in its own namespace.
    const csiChart = Testing.chart();
    new OrasCsiDriver(csiChart, 'Csi', { caBundle: CaBundle.fromConfigMap(kplus.ConfigMap.fromConfigMapName(csiChart, 'Ca', 'registry-ca')) });
    csi = Testing.synth(csiChart);
    // Its namespace, as examples/csi writes it: the plugin is privileged.
    csi.unshift({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: CSI_NAMESPACE, labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } } });
    cluster.apply({ objects: csi.filter((o: any) => o.kind === 'Namespace') });
    cluster.apply({ namespace: CSI_NAMESPACE, objects: [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'registry-ca' }, data: { 'ca.crt': certs.caCert } }] });
    cluster.apply({ objects: csi.filter((o: any) => o.kind !== 'Namespace') });
    cluster.kubectlOk(['apply', '-f', webhookBundle]);
    cluster.kubectlOk(['rollout', 'status', '-n', 'oras-system', 'deployment/oras-webhook', '--timeout=180s'], { timeoutMs: 190_000 });
    // The API server calls it through the Service: wait until kube-proxy routes it.
    await cluster.serviceAddress('oras-system', 'oras-webhook', 443);
    cluster.kubectlOk(['rollout', 'status', '-n', CSI_NAMESPACE, 'daemonset/csi-oras-land-node', '--timeout=180s'], { timeoutMs: 190_000 });
  }, 600_000);

  afterAll(() => {
    cluster.kubectl(['delete', '-f', webhookBundle, '--wait=true', '--timeout=120s']);
    cluster.kubectl(['delete', '-f', '-', '--wait=true', '--timeout=120s', '--ignore-not-found'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: csi }) });
  }, 400_000);

  test('steps push and pull over verified HTTPS, an annotated pod reads with ca-configmap, and a CSI volume mounts the artifact', async () => {
    const ns = namespace.name;
    const chart = namespaced();
    const registry = tlsRegistry(chart);
    const workflow = new OrasWorkflow(chart, 'Wf', { name: 'ca', registry, runId: 'r1', runtimeImage: OrasRuntimeImage.default() });
    const produce = workflow.addStep('produce', { image: NODE_IMAGES.busybox, command: ['sh', '-c', 'echo "signed by a private CA" > /out/hello.txt'], output: { path: '/out' } });
    workflow.addStep('consume', {
      image: NODE_IMAGES.busybox, command: ['sh', '-c', 'cat /in/hello.txt > /out/copy.txt'], inputs: [{ artifact: produce.output, path: '/in' }], output: { path: '/out' },
    });
    // The Jobs, and the account and Role with which the producer resumes the consumer (the registry runs already).
    const objects = Testing.synth(chart).filter((o) => ['Job', 'ServiceAccount', 'Role', 'RoleBinding'].includes(o.kind));
    const unverified = ['--insecure', '--plain-http', '--insecure-host', '--plain-http-host'];
    const args = objects.filter((o) => o.kind === 'Job').flatMap((job) => job.spec.template.spec.containers.flatMap((c: any) => c.args ?? []));
    expect(args.filter((a: string) => unverified.includes(a))).toEqual([]);
    cluster.apply({ namespace: ns, objects });
    expect(await cluster.jobOutcomes(ns, ['ca-produce-r1', 'ca-consume-r1'], 180_000)).toEqual({ 'ca-produce-r1': 'Complete', 'ca-consume-r1': 'Complete' });

    // An annotated pod: the oras-cache registry over HTTPS, verified with the CA in a ConfigMap.
    cluster.apply({
      namespace: ns,
      objects: [{
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: 'annotated',
          annotations: Object.fromEntries(Object.entries({
            'oras-cache': 'oras', 'ca-configmap': 'registry-ca', 'input-uri': produce.output.reference.replace(/^[^/]+\//, ''), 'input-path': '/in',
          }).map(([k, v]) => [PREFIX + k, v])),
        },
        spec: { containers: [{ name: 'app', image: NODE_IMAGES.busybox, command: ['cat', '/in/hello.txt'] }] },
      }],
    });
    expect(await podPhase('annotated')).toBe('Succeeded');
    expect(cluster.kubectlOk(['logs', '-n', ns, 'annotated'])).toBe('signed by a private CA\n');

    // A CSI volume from the same registry: the plugin verifies it with its --ca-file.
    const csiChart = Testing.chart();
    const driver = new OrasCsiDriver(csiChart, 'Csi');
    const volume = driver.volume(csiChart, 'Data', produce.output, { name: 'data' });
    new kplus.Pod(csiChart, 'Reader', {
      metadata: { name: 'csi-reader' },
      restartPolicy: kplus.RestartPolicy.NEVER,
      securityContext: { user: 65532, group: 65532, ensureNonRoot: true },
      containers: [{
        name: 'main',
        image: NODE_IMAGES.busybox,
        imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
        command: ['cat', '/data/hello.txt'],
        volumeMounts: [{ path: '/data', volume, readOnly: true }],
        securityContext: { user: 65532, group: 65532, ensureNonRoot: true, readOnlyRootFilesystem: true },
      }],
    });
    cluster.apply({ namespace: ns, objects: Testing.synth(csiChart).filter((o) => o.kind === 'Pod') });
    expect(await podPhase('csi-reader')).toBe('Succeeded');
    expect(cluster.kubectlOk(['logs', '-n', ns, 'csi-reader'])).toBe('signed by a private CA\n');
  });

  test('one step reads a private input over verified HTTPS with its own credentials and writes to a plain-HTTP registry', async () => {
    const ns = namespace.name;
    const password = randomBytes(12).toString('hex');
    const certs = issueCertificates({ dnsNames: [`private.${ns}.svc`], ipAddresses: [] });
    cluster.apply({
      namespace: ns,
      objects: [
        ...loginSecrets({ htpasswd: 'private-htpasswd', login: 'private-login' }, `private.${ns}.svc:5000`, 'reader', password),
        tlsSecretWithCa('private-tls', certs),
      ],
    });
    const chart = namespaced();
    const tlsSecret = kplus.Secret.fromSecretName(chart, 'PrivateTls', 'private-tls');
    const privateRegistry = new OrasRegistry(chart, 'Private', {
      name: 'private',
      tlsSecret,
      caBundle: CaBundle.fromSecret(tlsSecret),
      htpasswd: { secret: kplus.Secret.fromSecretName(chart, 'H', 'private-htpasswd'), clientCredentials: kplus.Secret.fromSecretName(chart, 'L', 'private-login') },
    });
    const plain = new OrasRegistry(chart, 'Plain', { name: 'plain' });
    const workflow = new OrasWorkflow(chart, 'Wf', { name: 'mixed', registry: plain, runId: 'r1', runtimeImage: OrasRuntimeImage.default() });
    const secret = workflow.addStep('secret', {
      image: NODE_IMAGES.busybox, command: ['sh', '-c', 'echo "from the private registry" > /out/recipe.txt'], output: { path: '/out' }, registry: privateRegistry,
    });
    workflow.addStep('publish', {
      image: NODE_IMAGES.busybox, command: ['sh', '-c', 'tr a-z A-Z < /in/recipe.txt > /out/published.txt'], inputs: [{ artifact: secret.output, path: '/in' }], output: { path: '/out' },
    });
    cluster.apply({ namespace: ns, objects: Testing.synth(chart) });
    for (const name of ['private', 'plain']) cluster.kubectlOk(['rollout', 'status', '-n', ns, `deployment/${name}`, '--timeout=120s'], { timeoutMs: 130_000 });
    expect(await cluster.jobOutcomes(ns, ['mixed-secret-r1', 'mixed-publish-r1'], 180_000)).toEqual({ 'mixed-secret-r1': 'Complete', 'mixed-publish-r1': 'Complete' });

    const [pod] = cluster.podsOfJob(ns, 'mixed-publish-r1');
    const pull = pod.spec.containers.find((c: any) => c.name === 'oras-pull');
    // Plain HTTP only for the output's registry (oras-pull looks up the memo there), never for the private input's.
    expect(pull.args.filter((_: string, i: number) => pull.args[i - 1] === '--plain-http-host')).toEqual([plain.host]);
    expect(JSON.stringify(pod.spec)).not.toContain(password);
    const address = await cluster.serviceAddress(ns, 'plain', 5000);
    const out = mkdtempSync(join(tmpdir(), 'oras-mixed-'));
    try {
      const pulled = run(requirePeer('oras'), ['pull', '--plain-http', `${address}/mixed/publish:r1-output`, '-o', out]);
      expect(pulled.status).toBe(0);
      expect(readFileSync(join(out, 'published.txt'), 'utf8')).toBe('FROM THE PRIVATE REGISTRY\n');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

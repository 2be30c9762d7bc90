import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { ApiObject, Chart, JsonPatch, Size, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { CaBundle, DEFAULT_REGISTRY_IMAGE, OrasRegistry, OrasRegistryProps, OrasWorkflow, RegistryStorage } from '../src';
import { Distribution } from './util/distribution';
import { basicAuth, request } from './util/http';
import { expectValidKubernetes } from './util/kubernetes-schema';
import { describeWithPeers, requirePeer } from './util/peers';

function synth(props: (chart: Chart) => OrasRegistryProps = () => ({})) {
  const chart = Testing.chart();
  const registry = new OrasRegistry(chart, 'Cache', props(chart));
  const manifests = Testing.synth(chart);
  const find = (kind: string) => manifests.filter((m) => m.kind === kind);
  const [deployment] = find('Deployment');
  return { registry, manifests, find, deployment, pod: deployment.spec.template.spec, container: deployment.spec.template.spec.containers[0] };
}

function envOf(container: any): Record<string, string> {
  return Object.fromEntries(container.env.map((e: any) => [e.name, e.value]));
}

describe('OrasRegistry', () => {
  test('escape hatch: ApiObject.of(registry) is its Deployment\'s object', () => {
    const chart = Testing.chart();
    const registry = new OrasRegistry(chart, 'Oras', { name: 'oras' });
    expect(ApiObject.of(registry)).toBe(ApiObject.of(registry.deployment));
    ApiObject.of(registry).addJsonPatch(JsonPatch.add('/spec/template/spec/priorityClassName', 'high'));
    expect(Testing.synth(chart).find((o) => o.kind === 'Deployment').spec.template.spec.priorityClassName).toBe('high');
  });

  test('defaults: one hardened pod of a pinned distribution, a Service on 5000, emptyDir storage', () => {
    const { registry, manifests, find, deployment, pod, container } = synth();
    expectValidKubernetes(manifests);
    expect(manifests.map((m) => m.kind).sort()).toEqual(['Deployment', 'Service']);

    expect(registry.name).toMatch(/^test-cache-c[0-9a-f]+$/);
    expect(deployment.metadata.name).toBe(registry.name);
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy).toEqual({ type: 'Recreate' });
    expect(container.image).toBe(DEFAULT_REGISTRY_IMAGE);
    expect(DEFAULT_REGISTRY_IMAGE).toMatch(/:2\.8\.\d+$/);
    expect(envOf(container)).toEqual({
      REGISTRY_HTTP_ADDR: ':5000',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/var/lib/registry',
      REGISTRY_STORAGE_DELETE_ENABLED: 'true',
    });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/v2/', port: 5000, scheme: 'HTTP' });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/v2/', port: 5000, scheme: 'HTTP' });
    expect(container.resources.limits).toEqual({ cpu: '1', memory: '1024Mi' });

    expect(container.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(pod.securityContext).toMatchObject({ fsGroup: 65532, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.volumes).toEqual([{ name: 'storage', emptyDir: { sizeLimit: '10240Mi' } }]);
    expect(container.volumeMounts).toEqual([{ name: 'storage', mountPath: '/var/lib/registry' }]);

    const [service] = find('Service');
    expect(service.metadata.name).toBe(registry.name);
    expect(service.spec.ports).toEqual([{ name: 'registry', port: 5000, targetPort: 5000 }]);
    expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
  });

  test('name, namespace and host follow the oras-cache convention', () => {
    const inNamespace = synth(() => ({ name: 'oras', namespace: 'team-a' }));
    expect(inNamespace.registry.host).toBe('oras.team-a.svc:5000');
    expect(inNamespace.manifests.every((m) => m.metadata.namespace === 'team-a')).toBe(true);
    expect(inNamespace.find('Service')[0].metadata.name).toBe('oras');

    const chart = Testing.chart();
    const fromChart = new OrasRegistry(new Chart(chart, 'Ns', { namespace: 'experiments' }), 'Cache', { name: 'oras' });
    expect(fromChart.host).toBe('oras.experiments.svc:5000');

    const plain = synth(() => ({ name: 'oras' }));
    expect(plain.registry.host).toBe('oras:5000');
    expect(plain.registry.plainHttp).toBe(true);
    expect(plain.registry.insecure).toBe(false);
    expect(plain.registry.credentials).toBeUndefined();
    expect(plain.registry.artifact('runs/data', 'v1').reference).toBe('oras:5000/runs/data:v1');
    expect(plain.registry.artifact('runs/data', 'v1').registry).toBe(plain.registry);
  });

  test.each([
    ['Oras', /name "Oras" must be a DNS-1035 label/],
    ['1cache', /name "1cache" must be a DNS-1035 label/],
    ['x'.repeat(64), /must be a DNS-1035 label/],
  ])('rejects the name %j', (name, message) => {
    expect(() => synth(() => ({ name }))).toThrow(message);
  });

  test.each(['docker.io/library/registry', 'registry:latest'])('rejects the unpinned image %j', (image) => {
    expect(() => synth(() => ({ image }))).toThrow(/is not pinned. Give an explicit version tag or @sha256 digest/);
  });

  test('accepts an image pinned by digest', () => {
    const image = `registry.example.com/mirror/registry@sha256:${'e'.repeat(64)}`;
    expect(synth(() => ({ image })).container.image).toBe(image);
  });

  test('PVC storage: a claim of the given size and class, mounted by the single pod', () => {
    const { manifests, find, pod } = synth(() => ({
      name: 'oras',
      storage: RegistryStorage.persistentVolumeClaim({ size: Size.gibibytes(50), storageClassName: 'fast' }),
    }));
    expectValidKubernetes(manifests);
    const [claim] = find('PersistentVolumeClaim');
    expect(claim.metadata.name).toBe('oras-storage');
    expect(claim.spec).toEqual({
      accessModes: ['ReadWriteOnce'],
      resources: { requests: { storage: '50Gi' } },
      storageClassName: 'fast',
      volumeMode: 'Filesystem',
    });
    expect(pod.volumes).toEqual([{ name: 'storage', persistentVolumeClaim: { claimName: 'oras-storage', readOnly: false } }]);
  });

  test('htpasswd auth: file from the Secret, TCP probes, client credentials exposed', () => {
    const { registry, manifests, pod, container } = synth((chart) => ({
      htpasswd: {
        secret: kplus.Secret.fromSecretName(chart, 'Htpasswd', 'registry-htpasswd'),
        clientCredentials: kplus.Secret.fromSecretName(chart, 'Login', 'registry-login'),
        realm: 'cache',
      },
    }));
    expectValidKubernetes(manifests);
    expect(envOf(container)).toMatchObject({
      REGISTRY_AUTH: 'htpasswd',
      REGISTRY_AUTH_HTPASSWD_REALM: 'cache',
      REGISTRY_AUTH_HTPASSWD_PATH: '/etc/oras-registry/auth/htpasswd',
    });
    expect(pod.volumes).toContainEqual({ name: 'htpasswd', secret: { secretName: 'registry-htpasswd', items: [{ key: 'htpasswd', path: 'htpasswd' }] } });
    expect(container.volumeMounts).toContainEqual({ name: 'htpasswd', mountPath: '/etc/oras-registry/auth', readOnly: true });
    expect(container.readinessProbe.tcpSocket).toEqual({ port: 5000 });
    expect(container.readinessProbe.httpGet).toBeUndefined();
    expect(registry.credentials?.name).toBe('registry-login');
  });

  test('TLS: certificate from the Secret, HTTPS probes, clients use TLS', () => {
    const { registry, manifests, pod, container } = synth((chart) => ({
      tlsSecret: kplus.Secret.fromSecretName(chart, 'Tls', 'registry-tls'),
    }));
    expectValidKubernetes(manifests);
    expect(envOf(container)).toMatchObject({
      REGISTRY_HTTP_TLS_CERTIFICATE: '/etc/oras-registry/tls/tls.crt',
      REGISTRY_HTTP_TLS_KEY: '/etc/oras-registry/tls/tls.key',
    });
    expect(pod.volumes).toContainEqual({ name: 'tls', secret: { secretName: 'registry-tls' } });
    expect(container.readinessProbe.httpGet.scheme).toBe('HTTPS');
    expect(registry.plainHttp).toBe(false);
    expect(registry.insecure).toBe(false);
  });

  test('insecure needs TLS', () => {
    expect(() => synth(() => ({ insecure: true }))).toThrow(/"insecure" skips TLS verification, but no "tlsSecret" is set.*Remove "insecure" or add "tlsSecret"/);
  });

  test('allowFrom: a NetworkPolicy admits only the listed pods on 5000', () => {
    const { manifests, find, deployment } = synth((chart) => ({
      allowFrom: [kplus.Pods.select(chart, 'Steps', { labels: { 'oras.land/step': 'true' } })],
    }));
    expectValidKubernetes(manifests);
    const [policy] = find('NetworkPolicy');
    expect(policy.spec.podSelector).toEqual(deployment.spec.selector);
    expect(policy.spec.policyTypes).toEqual(['Ingress']);
    expect(policy.spec.ingress).toEqual([{
      from: [{ podSelector: { matchLabels: { 'oras.land/step': 'true' } } }],
      ports: [{ port: 5000, protocol: 'TCP' }],
    }]);
  });

  test('allowFrom must not be empty', () => {
    expect(() => synth(() => ({ allowFrom: [] }))).toThrow(/"allowFrom" is empty, which would deny every client/);
  });
});

describe('OrasRegistry.fromHost', () => {
  test('an external registry with its connection settings', () => {
    const chart = Testing.chart();
    const credentials = kplus.Secret.fromSecretName(chart, 'Login', 'ghcr-login');
    const registry = OrasRegistry.fromHost('ghcr.io', { credentials });
    expect(registry.host).toBe('ghcr.io');
    expect(registry.plainHttp).toBe(false);
    expect(registry.credentials).toBe(credentials);
    expect(registry.artifact('acme/runs', 'v1').reference).toBe('ghcr.io/acme/runs:v1');
    expect(OrasRegistry.fromHost('127.0.0.1:5000', { plainHttp: true }).plainHttp).toBe(true);
    expect(OrasRegistry.fromHost('10.0.0.1:5000', { insecure: true }).insecure).toBe(true);
  });

  test.each([
    ['ghcr.io/', /host "ghcr.io\/" must be a DNS name/],
    ['bad_host', /host "bad_host" must be a DNS name/],
    ['host:0', /port "0"/],
  ])('rejects the host %j', (host, message) => {
    expect(() => OrasRegistry.fromHost(host)).toThrow(message);
  });

  test('plainHttp and insecure exclude each other', () => {
    expect(() => OrasRegistry.fromHost('r.io', { plainHttp: true, insecure: true })).toThrow(/exclude each other/);
  });
});

/**
 * Runs the real distribution with the environment and files the Deployment
 * gives its container, mapping each volume's mountPath to a scratch directory.
 */
describeWithPeers(['docker-registry', 'htpasswd', 'openssl'], 'OrasRegistry configuration on a real distribution registry', () => {
  let scratch: string;
  beforeEach(() => { scratch = mkdtempSync(join(tmpdir(), 'oras-registry-test-')); });
  afterEach(() => rmSync(scratch, { recursive: true, force: true }));

  /** The container's env with volume paths moved under the scratch directory; throws for a path outside every volume. */
  function hostEnv(container: any): Record<string, string> {
    const mounts: string[] = container.volumeMounts.map((m: any) => m.mountPath);
    const env = envOf(container);
    for (const [name, value] of Object.entries(env)) {
      if (!value.startsWith('/')) continue;
      const mount = mounts.find((m) => value === m || value.startsWith(m + '/'));
      if (!mount) throw new Error(`${name}=${value} is outside every volume of the container`);
      env[name] = join(scratch, value);
    }
    for (const mount of mounts) mkdirSync(join(scratch, mount), { recursive: true });
    return env;
  }

  /** Pushes one empty OCI artifact, then deletes it by digest; resolves to the delete status. */
  async function pushAndDelete(base: string, headers: Record<string, string>, ca?: string): Promise<number> {
    const config = Buffer.from('{}');
    const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
    const session = await request(`${base}/v2/probe/blobs/uploads/`, { method: 'POST', headers, ca });
    expect(session.status).toBe(202);
    const location = new URL(session.headers.location as string, base);
    location.searchParams.set('digest', configDigest);
    const upload = await request(location.toString(), { method: 'PUT', headers: { ...headers, 'Content-Type': 'application/octet-stream' }, body: config, ca });
    expect(upload.status).toBe(201);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: [],
    });
    const put = await request(`${base}/v2/probe/manifests/v1`, { method: 'PUT', headers: { ...headers, 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' }, body: manifest, ca });
    expect(put.status).toBe(201);
    const digest = put.headers['docker-content-digest'] as string;
    const deleted = await request(`${base}/v2/probe/manifests/${digest}`, { method: 'DELETE', headers, ca });
    return deleted.status;
  }

  test('anonymous: /v2/ answers 200 and deletes are enabled', async () => {
    const { container } = synth();
    const registry = await Distribution.start({ env: hostEnv(container) });
    try {
      expect((await request(`http://${registry.host}${container.readinessProbe.httpGet.path}`)).status).toBe(200);
      expect(await pushAndDelete(`http://${registry.host}`, {})).toBe(202);
    } finally {
      await registry.stop();
    }
  });

  test('htpasswd: 401 without credentials, 200 with them', async () => {
    const { container } = synth((chart) => ({ htpasswd: { secret: kplus.Secret.fromSecretName(chart, 'H', 'h') } }));
    const env = hostEnv(container);
    writeFileSync(env.REGISTRY_AUTH_HTPASSWD_PATH, execFileSync(requirePeer('htpasswd'), ['-B', '-i', '-n', 'steps'], { input: 's3cret' }));
    const registry = await Distribution.start({ env });
    try {
      const anonymous = await request(`http://${registry.host}/v2/`);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers['www-authenticate']).toBe('Basic realm="oras-registry"');
      expect((await request(`http://${registry.host}/v2/`, { headers: { Authorization: basicAuth('steps', 'wrong') } })).status).toBe(401);
      expect(await pushAndDelete(`http://${registry.host}`, { Authorization: basicAuth('steps', 's3cret') })).toBe(202);
    } finally {
      await registry.stop();
    }
  });

  test('TLS: serves HTTPS with the certificate from the Secret', async () => {
    const { container } = synth((chart) => ({ tlsSecret: kplus.Secret.fromSecretName(chart, 'T', 't') }));
    const env = hostEnv(container);
    execFileSync(requirePeer('openssl'), ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', env.REGISTRY_HTTP_TLS_KEY, '-out', env.REGISTRY_HTTP_TLS_CERTIFICATE], { stdio: 'ignore' });
    const ca = execFileSync('cat', [env.REGISTRY_HTTP_TLS_CERTIFICATE], { encoding: 'utf8' });
    const registry = await Distribution.start({ env });
    try {
      expect((await request(`https://${registry.host}${container.readinessProbe.httpGet.path}`, { ca })).status).toBe(200);
      await expect(request(`http://${registry.host}/v2/`)).resolves.toMatchObject({ status: 400 });
      expect(await pushAndDelete(`https://${registry.host}`, {}, ca)).toBe(202);
    } finally {
      await registry.stop();
    }
  });
});

describe('CaBundle: a private CA that clients trust', () => {
  test('fromHost and in-cluster TLS registries carry it to the steps, which mount it; it needs HTTPS', () => {
    const chart = Testing.chart();
    const ca = CaBundle.fromConfigMap(kplus.ConfigMap.fromConfigMapName(chart, 'Ca', 'registry-ca'));
    expect(OrasRegistry.fromHost('registry.example.com', { caBundle: ca }).caBundle).toBe(ca);
    expect(() => OrasRegistry.fromHost('registry.example.com', { caBundle: ca, insecure: true })).toThrow(/"caBundle" verifies the registry's HTTPS certificate; it goes with neither "plainHttp" nor "insecure"/);
    const tlsSecret = kplus.Secret.fromSecretName(chart, 'Tls', 'oras-tls');
    expect(() => new OrasRegistry(chart, 'Plain', { caBundle: ca })).toThrow(/"caBundle" verifies the registry's certificate, but no "tlsSecret" is set.*Add "tlsSecret" or remove "caBundle"/);
    const registry = new OrasRegistry(chart, 'Oras', { name: 'oras', tlsSecret, caBundle: CaBundle.fromSecret(tlsSecret) });
    const workflow = new OrasWorkflow(chart, 'Wf', { name: 'wf', registry, runId: 'r1' });
    workflow.addStep('s', { image: 'busybox:1.36.1', command: ['true'], output: { path: '/out' } });
    const job = Testing.synth(chart).find((o) => o.kind === 'Job');
    expect(job.spec.template.spec.volumes).toContainEqual({ name: 'oras-ca-0', secret: { secretName: 'oras-tls', items: [{ key: 'ca.crt', path: 'ca.crt' }] } });
    const push = job.spec.template.spec.containers.find((c: any) => c.name === 'oras-push');
    expect(push.args).toEqual(expect.arrayContaining(['--ca-file', '/oras-ca/0/ca.crt']));
    expect(push.args).not.toContain('--plain-http-host');
  });

  test('a key that is no ConfigMap key fails at synth time', () => {
    const chart = Testing.chart();
    expect(() => CaBundle.fromConfigMap(kplus.ConfigMap.fromConfigMapName(chart, 'Ca', 'c'), 'a/b')).toThrow(/the key "a\/b" is no ConfigMap or Secret key/);
  });
});

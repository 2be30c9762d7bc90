import { spawnSync } from 'child_process';
import { join } from 'path';
import { ApiObject, Chart, JsonPatch, Size, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { CaBundle, OrasArtifact, OrasCsiDriver, OrasCsiDriverProps, OrasPullPolicy, OrasRegistry, OrasRuntimeImage } from '../src';
import { expectValidKubernetes } from './util/kubernetes-schema';

function synth(props: OrasCsiDriverProps = {}, chartNamespace?: string) {
  const chart = Testing.chart();
  const scope = chartNamespace ? new Chart(Testing.app(), 'ns', { namespace: chartNamespace }) : chart;
  const driver = new OrasCsiDriver(scope, 'Driver', props);
  const manifests = Testing.synth(scope as Chart);
  const find = (kind: string) => manifests.find((m) => m.kind === kind);
  const pod = find('DaemonSet')?.spec.template.spec;
  const container = (name: string) => pod?.containers.find((c: any) => c.name === name);
  return { driver, manifests, find, pod, container };
}

/** A chart holding a driver, and a Pod whose container mounts the volume `volume()` returns. */
function podWith(artifact: (scope: Construct) => OrasArtifact, options: Parameters<OrasCsiDriver['volume']>[3] = {}) {
  const chart = Testing.chart();
  const driver = new OrasCsiDriver(chart, 'Driver');
  const volume = driver.volume(chart, 'Data', artifact(chart), options);
  new kplus.Pod(chart, 'Pod', {
    containers: [{ image: 'docker.io/library/busybox:1.36.1', volumeMounts: [{ path: '/data', volume, readOnly: true }] }],
  });
  const manifests = Testing.synth(chart);
  const pod = manifests.find((m) => m.kind === 'Pod');
  return { volume, manifests, pod, spec: pod.spec.volumes[0] };
}

const external = (host: string, options: Parameters<typeof OrasRegistry.fromHost>[1] = {}) => OrasRegistry.fromHost(host, options);

describe('OrasCsiDriver', () => {
  test('without a StorageClass it writes a CSIDriver, the node DaemonSet and its ServiceAccount: no provisioner, no RBAC', () => {
    const { manifests, find, driver } = synth();
    expectValidKubernetes(manifests);
    expect(manifests.map((m) => m.kind).sort()).toEqual(['CSIDriver', 'DaemonSet', 'ServiceAccount']);
    expect(driver.name).toBe('csi.oras.land');
    expect(driver.namespace).toBe('oras-csi');
    expect(driver.workloadName).toBe('csi-oras-land-node');

    const csiDriver = find('CSIDriver');
    expect(csiDriver.apiVersion).toBe('storage.k8s.io/v1');
    expect(csiDriver.metadata.name).toBe('csi.oras.land');
    expect(csiDriver.spec).toEqual({
      attachRequired: false,
      podInfoOnMount: true,
      volumeLifecycleModes: ['Persistent', 'Ephemeral'],
      fsGroupPolicy: 'None',
      requiresRepublish: false,
    });

    const account = find('ServiceAccount');
    expect(account.metadata).toMatchObject({ name: 'csi-oras-land-node', namespace: 'oras-csi' });
    expect(account.automountServiceAccountToken).toBe(false);
    expect(driver.provisioner).toBeUndefined();
  });

  test('a StorageClass brings the provisioner: external-provisioner v5.3.0 and the plugin in controller mode, hardened, on one socket', () => {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver');
    driver.addStorageClass('Models');
    const manifests = Testing.synth(chart);
    expectValidKubernetes(manifests);
    expect(manifests.map((m) => m.kind).sort()).toEqual([
      'CSIDriver', 'ClusterRole', 'ClusterRoleBinding', 'DaemonSet', 'Deployment', 'Role', 'RoleBinding', 'ServiceAccount', 'ServiceAccount', 'StorageClass',
    ]);
    const deployment = manifests.find((m) => m.kind === 'Deployment');
    expect(ApiObject.of(driver.provisioner!).name).toBe('csi-oras-land-provisioner');
    expect(deployment.metadata).toMatchObject({ name: 'csi-oras-land-provisioner', namespace: 'oras-csi' });
    expect(deployment.spec.strategy).toEqual({ type: 'Recreate' });
    const pod = deployment.spec.template.spec;
    expect(pod.serviceAccountName).toBe('csi-oras-land-provisioner');
    const [provisioner, controller] = pod.containers;
    expect(provisioner).toMatchObject({
      name: 'csi-provisioner',
      image: 'registry.k8s.io/sig-storage/csi-provisioner:v5.3.0',
      args: ['--csi-address=/csi/csi.sock', '--extra-create-metadata', '--leader-election', '--leader-election-namespace=oras-csi', '--timeout=60s'],
      volumeMounts: [{ name: 'socket-dir', mountPath: '/csi' }],
    });
    expect(controller).toMatchObject({
      name: 'oras-csi-controller',
      image: OrasRuntimeImage.default().image,
      args: ['csi', '--endpoint', 'unix:///csi/csi.sock', '--controller', '--driver-name', 'csi.oras.land', '--health-port', '9808'],
      livenessProbe: { httpGet: { path: '/healthz', port: 'healthz' } },
    });
    for (const container of pod.containers) {
      expect(container.securityContext).toEqual({
        runAsUser: 65532,
        runAsGroup: 65532,
        runAsNonRoot: true,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        privileged: false,
        capabilities: { drop: ['ALL'] },
      });
      expect(Object.keys(container.resources.limits).sort()).toEqual(['cpu', 'memory']);
    }
    expect(pod.volumes).toEqual([{ name: 'socket-dir', emptyDir: {} }]);
  });

  test('the provisioner\'s RBAC: what external-provisioner needs for volumes and claims, its Lease, and no Secret unless a StorageClass names one', () => {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver');
    const registry = OrasRegistry.fromHost('registry.example.com', { credentials: kplus.Secret.fromSecretName(chart, 'Creds', 'registry-creds') });
    driver.addStorageClass('Open');
    const rulesOf = () => Testing.synth(chart).find((m) => m.kind === 'ClusterRole').rules;
    expect(rulesOf()).toEqual([
      { apiGroups: [''], resources: ['persistentvolumes'], verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'] },
      { apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['get', 'list', 'watch', 'update'] },
      { apiGroups: ['storage.k8s.io'], resources: ['storageclasses'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: [''], resources: ['events'], verbs: ['list', 'watch', 'create', 'update', 'patch'] },
    ]);
    driver.addStorageClass('Private', { registry });
    driver.addStorageClass('AlsoPrivate', { artifact: registry.artifact('models/demo', 'v1') });
    expect(rulesOf()[4]).toEqual({ apiGroups: [''], resources: ['secrets'], verbs: ['get'], resourceNames: ['registry-creds'] });
    const manifests = Testing.synth(chart);
    expect(manifests.find((m) => m.kind === 'Role').rules).toEqual([
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'watch', 'list', 'delete', 'update', 'create'] },
    ]);
    const binding = manifests.find((m) => m.kind === 'ClusterRoleBinding');
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'csi-oras-land-provisioner', namespace: 'oras-csi' }]);
    expect(manifests.filter((m) => m.kind === 'Deployment')).toHaveLength(1);
  });

  test('provisioner: true writes it without a StorageClass; provisioner: false refuses a StorageClass, naming the static alternative', () => {
    expect(synth({ provisioner: true }).find('Deployment')).toBeDefined();
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver', { provisioner: false });
    expect(() => driver.addStorageClass('Models')).toThrow(/needs the provisioner Deployment, but the driver has provisioner: false.*persistentVolume\(\)/);
  });

  test('caBundle reaches the controller too', () => {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver', { caBundle: CaBundle.fromConfigMap(kplus.ConfigMap.fromConfigMapName(chart, 'Ca', 'registry-ca')), provisioner: true });
    const pod = Testing.synth(chart).find((m) => m.kind === 'Deployment').spec.template.spec;
    expect(pod.containers[1].args.slice(-2)).toEqual(['--ca-file', '/etc/oras-ca/ca.crt']);
    expect(pod.containers[1].volumeMounts[1]).toEqual({ name: 'ca-bundle', mountPath: '/etc/oras-ca', readOnly: true });
    expect(pod.volumes[1]).toMatchObject({ name: 'ca-bundle', configMap: { name: 'registry-ca' } });
    expect(driver.provisioner).toBeDefined();
  });

  test('in a chart with a namespace, the cluster-scoped objects carry none', () => {
    const chart = new Chart(Testing.app(), 'apps', { namespace: 'ml' });
    const driver = new OrasCsiDriver(chart, 'Driver');
    driver.addStorageClass('Models');
    driver.persistentVolume(chart, 'Static', OrasRegistry.fromHost('registry.example.com').artifact('a', 'v1'));
    const namespaces = Object.fromEntries(Testing.synth(chart).map((m) => [m.kind, m.metadata.namespace]));
    expect(namespaces).toEqual({
      CSIDriver: undefined,
      ClusterRole: undefined,
      ClusterRoleBinding: undefined,
      StorageClass: undefined,
      PersistentVolume: undefined,
      ServiceAccount: 'ml',
      DaemonSet: 'ml',
      Deployment: 'ml',
      Role: 'ml',
      RoleBinding: 'ml',
      PersistentVolumeClaim: 'ml',
    });
  });

  test('the DaemonSet runs on every node, node-critical, without a token, one node at a time', () => {
    const { find, pod } = synth();
    const daemonSet = find('DaemonSet');
    expect(daemonSet.metadata).toMatchObject({ name: 'csi-oras-land-node', namespace: 'oras-csi' });
    expect(daemonSet.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    expect(daemonSet.spec.selector.matchLabels).toEqual(daemonSet.spec.template.metadata.labels);
    expect(pod).toMatchObject({
      serviceAccountName: 'csi-oras-land-node',
      automountServiceAccountToken: false,
      priorityClassName: 'system-node-critical',
      tolerations: [{ operator: 'Exists' }],
      nodeSelector: { 'kubernetes.io/os': 'linux' },
    });
    expect(pod.hostNetwork).toBeUndefined();
    // No sidecar: the plugin registers itself and serves its own /healthz.
    expect(pod.containers.map((c: any) => c.name)).toEqual(['oras-csi']);
    const upstream = synth({ upstreamSidecars: true }).pod;
    expect(upstream.containers.map((c: any) => c.name)).toEqual(['oras-csi', 'node-driver-registrar', 'liveness-probe']);
    for (const c of [...pod.containers, ...upstream.containers]) {
      expect(c.image).toMatch(/:v?\d+\.\d+\.\d+$/);
      expect(c.resources.requests).toEqual(expect.objectContaining({ cpu: expect.any(String), memory: expect.any(String) }));
      expect(c.resources.limits).toEqual(expect.objectContaining({ cpu: expect.any(String), memory: expect.any(String) }));
      expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
    }
    expect(pod.volumes).toEqual([
      { name: 'plugin-dir', hostPath: { path: '/var/lib/kubelet/plugins/csi.oras.land', type: 'DirectoryOrCreate' } },
      { name: 'registration-dir', hostPath: { path: '/var/lib/kubelet/plugins_registry', type: 'Directory' } },
      { name: 'pods-dir', hostPath: { path: '/var/lib/kubelet/pods', type: 'Directory' } },
      { name: 'cache-dir', hostPath: { path: '/var/lib/oras-csi', type: 'DirectoryOrCreate' } },
      { name: 'tmp', emptyDir: {} },
    ]);
  });

  test('the plugin: the runtime command contract, privileged for Bidirectional propagation, registers itself, its own liveness endpoint', () => {
    const plugin = synth().container('oras-csi');
    expect(plugin.image).toBe(OrasRuntimeImage.default().image);
    expect(plugin.args).toEqual([
      'csi',
      '--endpoint', 'unix:///csi/csi.sock',
      '--node-id', '$(NODE_NAME)',
      '--cache-dir', '/var/lib/oras-csi',
      '--driver-name', 'csi.oras.land',
      '--metrics-port', '9809',
      '--cache-max-size', String(20 * 1024 ** 3),
      '--kubelet-dir', '/var/lib/kubelet',
      '--registration-dir', '/registration',
      '--kubelet-registration-path', '/var/lib/kubelet/plugins/csi.oras.land/csi.sock',
      '--health-port', '9808',
    ]);
    expect(plugin.env).toEqual([{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }]);
    expect(plugin.securityContext).toEqual({
      privileged: true,
      allowPrivilegeEscalation: true,
      runAsUser: 0,
      runAsNonRoot: false,
      readOnlyRootFilesystem: true,
    });
    expect(plugin.volumeMounts).toEqual([
      { name: 'plugin-dir', mountPath: '/csi' },
      // Read-write: the plugin creates its registration socket there.
      { name: 'registration-dir', mountPath: '/registration' },
      { name: 'pods-dir', mountPath: '/var/lib/kubelet/pods', mountPropagation: 'Bidirectional' },
      { name: 'cache-dir', mountPath: '/var/lib/oras-csi' },
      { name: 'tmp', mountPath: '/tmp' },
    ]);
    expect(plugin.ports).toEqual([
      { name: 'healthz', containerPort: 9808, protocol: 'TCP' },
      { name: 'metrics', containerPort: 9809, protocol: 'TCP' },
    ]);
    expect(plugin.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'healthz' });
    expect(plugin.resources).toEqual({ requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '1', memory: '512Mi' } });
  });

  test('shareCacheAcrossNamespaces: the plugin gets --share-cache-across-namespaces, which its parser accepts', async () => {
    expect(synth().container('oras-csi').args).not.toContain('--share-cache-across-namespaces');
    const args: string[] = synth({ shareCacheAcrossNamespaces: true }).container('oras-csi').args;
    expect(args).toContain('--share-cache-across-namespaces');
    // The runtime's own check of its flags, before it touches the node: every synthesized flag is known to it.
    const bundle = join(__dirname, '..', 'runtime', 'build', 'oras-runtime.cjs');
    const csi = spawnSync(process.execPath, [bundle, ...args.map((a) => (a === '$(NODE_NAME)' ? 'node-a' : a)), '--no-such-flag'], { encoding: 'utf8', timeout: 60_000 });
    expect(csi.stderr).toMatch(/unknown option "--no-such-flag"/);
    expect(csi.stderr).not.toMatch(/share-cache-across-namespaces/);
  });

  test('escape hatch: ApiObject.of(driver) is its DaemonSet', () => {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Csi');
    expect(ApiObject.of(driver)).toBe(driver.daemonSet);
    ApiObject.of(driver).addJsonPatch(JsonPatch.add('/spec/template/spec/nodeSelector', { gpu: 'true' }));
    expect(Testing.synth(chart).find((o) => o.kind === 'DaemonSet').spec.template.spec.nodeSelector).toEqual({ gpu: 'true' });
  });

  test('caBundle: the plugin mounts it read-only and trusts it with --ca-file', () => {
    const chart = Testing.chart();
    const ca = CaBundle.fromConfigMap(kplus.ConfigMap.fromConfigMapName(chart, 'Ca', 'registry-ca'));
    new OrasCsiDriver(chart, 'Csi', { caBundle: ca });
    const ds = Testing.synth(chart).find((o) => o.kind === 'DaemonSet');
    const plugin = ds.spec.template.spec.containers[0];
    expect(plugin.args).toEqual(expect.arrayContaining(['--ca-file', '/etc/oras-ca/ca.crt']));
    expect(plugin.volumeMounts).toContainEqual({ name: 'ca-bundle', mountPath: '/etc/oras-ca', readOnly: true });
    expect(ds.spec.template.spec.volumes).toContainEqual({ name: 'ca-bundle', configMap: { name: 'registry-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }] } });
  });

  test('upstreamSidecars: pinned registrar and livenessprobe on the socket, read-only, no capabilities; the plugin does neither job', () => {
    const { container, manifests, pod } = synth({ upstreamSidecars: true });
    expectValidKubernetes(manifests);
    const plugin = container('oras-csi');
    expect(plugin.args).toEqual([
      'csi', '--endpoint', 'unix:///csi/csi.sock', '--node-id', '$(NODE_NAME)', '--cache-dir', '/var/lib/oras-csi',
      '--driver-name', 'csi.oras.land', '--metrics-port', '9809', '--cache-max-size', String(20 * 1024 ** 3), '--kubelet-dir', '/var/lib/kubelet',
    ]);
    expect(plugin.volumeMounts.map((m: any) => m.name)).toEqual(['plugin-dir', 'pods-dir', 'cache-dir', 'tmp']);
    // The probe now reaches the livenessprobe sidecar on the same port.
    expect(plugin.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'healthz' });
    expect(plugin.ports[0]).toEqual({ name: 'healthz', containerPort: 9808, protocol: 'TCP' });
    expect(pod.volumes).toEqual(synth().pod.volumes);
    const registrar = container('node-driver-registrar');
    const probe = container('liveness-probe');
    expect(registrar.image).toBe('registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.17.0');
    expect(registrar.args).toEqual(['--csi-address=/csi/csi.sock', '--kubelet-registration-path=/var/lib/kubelet/plugins/csi.oras.land/csi.sock']);
    expect(registrar.volumeMounts).toEqual([
      { name: 'plugin-dir', mountPath: '/csi', readOnly: true },
      { name: 'registration-dir', mountPath: '/registration' },
    ]);
    expect(probe.image).toBe('registry.k8s.io/sig-storage/livenessprobe:v2.19.0');
    expect(probe.args).toEqual(['--csi-address=/csi/csi.sock', '--health-port=9808']);
    expect(probe.volumeMounts).toEqual([{ name: 'plugin-dir', mountPath: '/csi', readOnly: true }]);
    for (const sidecar of [registrar, probe]) {
      expect(sidecar.securityContext).toEqual({
        runAsUser: 0,
        runAsNonRoot: false,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        privileged: false,
        capabilities: { drop: ['ALL'] },
      });
    }
  });

  test('every option: name, runtime image, directories, cache size, resources, metrics port', () => {
    const { manifests, find, pod, container, driver } = synth({
      name: 'artifacts.example.com',
      namespace: 'storage',
      runtimeImage: OrasRuntimeImage.fromImage('mirror.example.com/oras-runtime:1.2.3'),
      cacheDir: '/mnt/oras/cache',
      cacheMaxSize: Size.gibibytes(1),
      kubeletDir: '/var/lib/k0s/kubelet',
      resources: { cpu: { request: kplus.Cpu.millis(200) }, memory: { limit: Size.gibibytes(2) }, ephemeralStorage: { request: Size.gibibytes(1) } },
      metricsPort: 9100,
    });
    expectValidKubernetes(manifests);
    expect(driver.workloadName).toBe('artifacts-example-com-node');
    expect(find('CSIDriver').metadata.name).toBe('artifacts.example.com');
    expect(find('DaemonSet').metadata).toMatchObject({ name: 'artifacts-example-com-node', namespace: 'storage' });
    const plugin = container('oras-csi');
    expect(plugin.image).toBe('mirror.example.com/oras-runtime:1.2.3');
    expect(plugin.args).toEqual([
      'csi', '--endpoint', 'unix:///csi/csi.sock', '--node-id', '$(NODE_NAME)', '--cache-dir', '/mnt/oras/cache',
      '--driver-name', 'artifacts.example.com', '--metrics-port', '9100', '--cache-max-size', '1073741824', '--kubelet-dir', '/var/lib/k0s/kubelet',
      '--registration-dir', '/registration', '--kubelet-registration-path', '/var/lib/k0s/kubelet/plugins/artifacts.example.com/csi.sock', '--health-port', '9808',
    ]);
    expect(plugin.ports[1]).toEqual({ name: 'metrics', containerPort: 9100, protocol: 'TCP' });
    // Only what is given: a kind (cpu, memory) keeps its defaults only when left out entirely.
    expect(plugin.resources).toEqual({ requests: { 'cpu': '200m', 'ephemeral-storage': '1Gi' }, limits: { memory: '2Gi' } });
    expect(synth({ resources: { cpu: { request: kplus.Cpu.millis(200), limit: kplus.Cpu.units(2) } } }).container('oras-csi').resources)
      .toEqual({ requests: { cpu: '200m', memory: '64Mi' }, limits: { cpu: '2', memory: '512Mi' } });
    expect(plugin.volumeMounts.map((m: any) => m.mountPath)).toEqual(['/csi', '/registration', '/var/lib/k0s/kubelet/pods', '/mnt/oras/cache', '/tmp']);
    const upstream = synth({ name: 'artifacts.example.com', kubeletDir: '/var/lib/k0s/kubelet', upstreamSidecars: true });
    expect(upstream.container('node-driver-registrar').args[1]).toBe('--kubelet-registration-path=/var/lib/k0s/kubelet/plugins/artifacts.example.com/csi.sock');
    expect(pod.volumes.map((v: any) => v.hostPath?.path)).toEqual([
      '/var/lib/k0s/kubelet/plugins/artifacts.example.com', '/var/lib/k0s/kubelet/plugins_registry', '/var/lib/k0s/kubelet/pods', '/mnt/oras/cache', undefined,
    ]);
  });

  test("the namespace defaults to the chart's", () => {
    const { find, driver } = synth({}, 'oras-csi');
    expect(driver.namespace).toBe('oras-csi');
    expect(find('DaemonSet').metadata.namespace).toBe('oras-csi');
    expect(find('ServiceAccount').metadata.namespace).toBe('oras-csi');
  });

  test('a long name still gives a workload name of at most 63 characters', () => {
    const name = `${'a'.repeat(30)}.${'b'.repeat(32)}`;
    const { driver, manifests } = synth({ name });
    expect(driver.workloadName.length).toBeLessThanOrEqual(63);
    expect(driver.workloadName).toMatch(/^[a-z0-9-]+-node$/);
    expectValidKubernetes(manifests);
  });

  test('daemonSet is the DaemonSet ApiObject, open to JSON patches', () => {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver');
    expect(driver.daemonSet).toBeInstanceOf(ApiObject);
    expect(driver.daemonSet.kind).toBe('DaemonSet');
  });

  test.each([
    [{ name: 'CSI.oras.land' }, /name "CSI.oras.land" must be a DNS subdomain of at most 63 characters/],
    [{ name: 'csi..oras' }, /must be a DNS subdomain/],
    [{ name: `${'a'.repeat(60)}.land` }, /must be a DNS subdomain of at most 63 characters/],
    [{ cacheDir: 'var/lib/oras' }, /cacheDir "var\/lib\/oras" must be an absolute host path/],
    [{ cacheDir: '/var/lib/../oras' }, /cacheDir "\/var\/lib\/..\/oras" must be an absolute host path without "." or ".." segments/],
    [{ cacheDir: '/var/lib/oras/' }, /trailing "\/"/],
    [{ cacheDir: '/' }, /not "\/" itself/],
    [{ kubeletDir: 'kubelet' }, /kubeletDir "kubelet" must be an absolute host path/],
    [{ cacheDir: '/var/lib/kubelet/oras' }, /cacheDir "\/var\/lib\/kubelet\/oras" and kubeletDir "\/var\/lib\/kubelet" overlap/],
    [{ cacheDir: '/var/lib' }, /overlap/],
    [{ kubeletDir: `/${'k'.repeat(80)}` }, /a unix socket path has at most 107. Choose a shorter name or kubeletDir/],
    [{ metricsPort: 0 }, /metricsPort must be a whole number from 1 to 65535, not 0/],
    [{ metricsPort: 70000 }, /metricsPort must be a whole number/],
    [{ metricsPort: 9809.5 }, /metricsPort must be a whole number/],
    [{ metricsPort: 9808 }, /metricsPort 9808 is the port of \/healthz \(served by the plugin\); choose another, such as 9809/],
    [{ metricsPort: 9808, upstreamSidecars: true }, /metricsPort 9808 is the port of \/healthz \(served by the livenessprobe sidecar\)/],
    [{ cacheMaxSize: Size.kibibytes(0) }, /cacheMaxSize must be at least 1 KiB/],
  ])('refuses %j', (props, message) => {
    expect(() => synth(props as OrasCsiDriverProps)).toThrow(message);
  });
});

describe('OrasCsiDriver.volume', () => {
  test('a read-only inline volume of the driver with the reference and the pull policy; no registry, no connection attributes', () => {
    const { manifests, spec, volume } = podWith(() => OrasArtifact.fromReference('ghcr.io/team/models:v1'), { name: 'models' });
    expectValidKubernetes(manifests);
    expect(volume).toBeInstanceOf(kplus.Volume);
    expect(volume.name).toBe('models');
    expect(spec).toEqual({
      name: 'models',
      csi: {
        driver: 'csi.oras.land',
        readOnly: true,
        volumeAttributes: { 'oras.artifact.reference': 'ghcr.io/team/models:v1', 'oras.options.pullpolicy': 'IfNotPresent' },
      },
    });
  });

  test('every option becomes its attribute; plainhttp and insecure come from the registry', () => {
    const registry = external('oras.default.svc:5000', { plainHttp: true });
    const { manifests, spec } = podWith(() => registry.artifact('models/demo', 'v1').withDigest(`sha256:${'a'.repeat(64)}`), {
      pullPolicy: OrasPullPolicy.ALWAYS,
      mediaTypes: ['application/vnd.oci.image.layer.v1.tar', 'application/vnd.oci.image.layer.v1.tar+gzip'],
      concurrency: 4,
    });
    expectValidKubernetes(manifests);
    expect(spec.name).toMatch(/^[a-z0-9-]+$/);
    expect(spec.csi.volumeAttributes).toEqual({
      'oras.artifact.reference': `oras.default.svc:5000/models/demo:v1@sha256:${'a'.repeat(64)}`,
      'oras.artifact.layers.mediatype': 'application/vnd.oci.image.layer.v1.tar,application/vnd.oci.image.layer.v1.tar+gzip',
      'oras.options.concurrency': '4',
      'oras.options.plainhttp': 'true',
      'oras.options.insecure': 'false',
      'oras.options.pullpolicy': 'Always',
    });
    expect(spec.csi.nodePublishSecretRef).toBeUndefined();
  });

  test.each([
    [OrasPullPolicy.ALWAYS, 'Always'],
    [OrasPullPolicy.IF_NOT_PRESENT, 'IfNotPresent'],
    [OrasPullPolicy.NEVER, 'Never'],
  ])('pull policy %s is written as %s', (pullPolicy, value) => {
    const { spec } = podWith(() => OrasArtifact.fromReference('ghcr.io/a/b:v1'), { pullPolicy });
    expect(spec.csi.volumeAttributes['oras.options.pullpolicy']).toBe(value);
  });

  test('an insecure HTTPS registry', () => {
    const { spec } = podWith(() => external('registry.example.com', { insecure: true }).artifact('a', 'v1'));
    expect(spec.csi.volumeAttributes).toMatchObject({ 'oras.options.plainhttp': 'false', 'oras.options.insecure': 'true' });
  });

  test('an OrasRegistry in the cluster: its full Service name, plain HTTP', () => {
    const { spec } = podWith((scope) => new OrasRegistry(scope, 'Registry', { name: 'oras', namespace: 'cache' }).artifact('data', 'v1'));
    expect(spec.csi.volumeAttributes).toMatchObject({
      'oras.artifact.reference': 'oras.cache.svc:5000/data:v1',
      'oras.options.plainhttp': 'true',
      'oras.options.insecure': 'false',
    });
  });

  test('credentials become the nodePublishSecretRef, in every kind of workload', () => {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver');
    const credentials = kplus.Secret.fromSecretName(chart, 'Pull', 'registry-login');
    const artifact = OrasArtifact.fromReference('ghcr.io/team/models:v1');
    const containers = (volume: kplus.Volume) => [{ image: 'docker.io/library/busybox:1.36.1', volumeMounts: [{ path: '/data', volume, readOnly: true }] }];
    new kplus.Pod(chart, 'Pod', { containers: containers(driver.volume(chart, 'PodData', artifact, { credentials, name: 'data' })) });
    new kplus.Deployment(chart, 'Deployment', { containers: containers(driver.volume(chart, 'DeploymentData', artifact, { credentials, name: 'data' })) });
    new kplus.Job(chart, 'Job', { containers: containers(driver.volume(chart, 'JobData', artifact, { credentials, name: 'data' })) });
    new kplus.StatefulSet(chart, 'StatefulSet', {
      containers: containers(driver.volume(chart, 'SetData', artifact, { credentials, name: 'data' })),
      service: new kplus.Service(chart, 'Headless', { clusterIP: 'None', ports: [{ port: 80 }] }),
    });
    const manifests = Testing.synth(chart);
    expectValidKubernetes(manifests);
    const specs = manifests.filter((m) => ['Pod', 'Deployment', 'Job', 'StatefulSet'].includes(m.kind))
      .map((m) => [m.kind, (m.kind === 'Pod' ? m.spec : m.spec.template.spec).volumes]);
    expect(specs).toHaveLength(4);
    for (const [, volumes] of specs) {
      expect(volumes).toEqual([{
        name: 'data',
        csi: {
          driver: 'csi.oras.land',
          readOnly: true,
          nodePublishSecretRef: { name: 'registry-login' },
          volumeAttributes: { 'oras.artifact.reference': 'ghcr.io/team/models:v1', 'oras.options.pullpolicy': 'IfNotPresent' },
        },
      }]);
    }
  });

  test("the registry's credentials are the default; explicit ones win", () => {
    const fromRegistry = podWith((scope) => external('ghcr.io', { credentials: kplus.Secret.fromSecretName(scope, 'Login', 'ghcr-login') }).artifact('team/a', 'v1'));
    expect(fromRegistry.spec.csi.nodePublishSecretRef).toEqual({ name: 'ghcr-login' });

    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver');
    const artifact = external('ghcr.io', { credentials: kplus.Secret.fromSecretName(chart, 'Login', 'ghcr-login') }).artifact('team/a', 'v1');
    const volume = driver.volume(chart, 'Data', artifact, { credentials: kplus.Secret.fromSecretName(chart, 'Other', 'other-login') });
    expect((volume as any)._toKube().csi.nodePublishSecretRef).toEqual({ name: 'other-login' });
  });

  test('credentials are never dropped silently: a cdk8s-plus-27 whose Volume cannot carry them fails the synth', () => {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver');
    const credentials = kplus.Secret.fromSecretName(chart, 'Pull', 'registry-login');
    // Stands in for a cdk8s-plus-27 release whose Volume keeps its source elsewhere.
    const fromCsi = jest.spyOn(kplus.Volume, 'fromCsi').mockImplementation((scope, id) => kplus.Volume.fromEmptyDir(scope, id, 'data'));
    try {
      expect(() => driver.volume(chart, 'Data', OrasArtifact.fromReference('ghcr.io/a/b:v1'), { credentials }))
        .toThrow(/does not let cdk8s-oras set the volume's nodePublishSecretRef, so the credentials \("registry-login"\) cannot reach the node plugin/);
    } finally {
      fromCsi.mockRestore();
    }
  });

  test('uses the driver name', () => {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver', { name: 'artifacts.example.com' });
    const volume = driver.volume(chart, 'Data', OrasArtifact.fromReference('ghcr.io/a/b:v1'));
    expect((volume as any)._toKube().csi.driver).toBe('artifacts.example.com');
  });

  test.each([
    ['oras:5000/data:v1', {}, /registry host "oras:5000" of "oras:5000\/data:v1" is a single label, .* in its own namespace \("oras-csi"\)/],
    ['localhost/data:v1', {}, /registry host "localhost" .* is a single label/],
    ['ghcr.io/a/b:v1', { concurrency: 0 }, /concurrency must be a whole number of at least 1, not 0/],
    ['ghcr.io/a/b:v1', { concurrency: 2.5 }, /concurrency must be a whole number of at least 1, not 2.5/],
    ['ghcr.io/a/b:v1', { mediaTypes: [] }, /mediaTypes is empty, which would keep no layer. Omit it to keep every layer/],
    ['ghcr.io/a/b:v1', { mediaTypes: ['application/json,text/plain'] }, /media type "application\/json,text\/plain" must be "type\/subtype" without parameters or commas/],
    ['ghcr.io/a/b:v1', { mediaTypes: ['text/plain; charset=utf-8'] }, /must be "type\/subtype"/],
    ['ghcr.io/a/b:v1', { mediaTypes: ['tar'] }, /media type "tar" must be "type\/subtype"/],
    ['ghcr.io/a/b:v1', { name: 'Models' }, /name "Models" must be a DNS label/],
  ])('refuses %s with %j', (reference, options, message) => {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver');
    expect(() => driver.volume(chart, 'Data', OrasArtifact.fromReference(reference), options)).toThrow(message);
  });

  test('an IP address or a bracketed IPv6 host is accepted', () => {
    for (const reference of ['10.0.0.5:5000/a:v1', '[fd00::1]:5000/a:v1']) {
      const { spec } = podWith(() => OrasArtifact.fromReference(reference));
      expect(spec.csi.volumeAttributes['oras.artifact.reference']).toBe(reference);
    }
  });

  test('an OrasRegistry without a namespace is refused, with the fix', () => {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver');
    const artifact = new OrasRegistry(chart, 'Registry', { name: 'oras' }).artifact('data', 'v1');
    expect(() => driver.volume(chart, 'Data', artifact)).toThrow(/Give the registry's full name, such as "<service>.<namespace>.svc:5000" \(an OrasRegistry with a namespace has one\)/);
  });
});

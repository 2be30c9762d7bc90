import { randomBytes } from 'crypto';
import { Chart, Size, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { OrasCsiDriver, OrasReclaimPolicy, OrasRegistry, OrasStorageClass } from '../../src';
import { NODE_IMAGES } from '../util/images';
import { KubeCluster, orasPushFile } from '../util/kube-node';
import { describeOnNode } from '../util/node';

const DRIVER = 'pv.oras.land';
const SYSTEM = 'oras-pv-system';
const APPS = 'oras-pv';

/**
 * Persistent volumes on the node: a driver of its own (name and namespaces),
 * its provisioner Deployment (external-provisioner v5.3.0 and the plugin in
 * controller mode), a StorageClass whose claims name their artifacts, and a
 * static PersistentVolume, all as the constructs write them.
 */
describeOnNode('CSI persistent volumes on a Kubernetes node', (cluster: KubeCluster) => {
  const content = `weights ${randomBytes(8).toString('hex')}\n`;
  const registry = OrasRegistry.fromHost(`oras.${APPS}.svc:5000`, { plainHttp: true });
  let storageClass: OrasStorageClass;
  let chart: Chart;
  const ApiName = { provisioner: 'pv-oras-land-provisioner', daemonSet: 'pv-oras-land-node' };

  const describeAll = () => `${cluster.describe(APPS)}\n${cluster.describe(SYSTEM)}`;
  const claimPhase = (name: string) => cluster.getJson(['get', 'pvc', '-n', APPS, name]).status.phase;
  const events = (name: string) => (cluster.getJson(['get', 'events', '-n', APPS, '--field-selector', `involvedObject.name=${name}`]).items as any[])
    .map((e) => `${e.reason}: ${e.message}`);
  const provisionerLog = () => cluster.kubectlOk(['logs', '-n', SYSTEM, `deployment/${ApiName.provisioner}`, '-c', 'oras-csi-controller']);
  /** GETs of each blob of models/demo in the registry's log. */
  const blobGets = () => {
    const counts: Record<string, number> = {};
    const log = cluster.kubectlOk(['logs', '-n', APPS, 'deployment/oras']);
    for (const match of log.matchAll(/"GET \/v2\/models\/demo\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/1\.1" 200/g)) counts[match[1]] = (counts[match[1]] ?? 0) + 1;
    return counts;
  };

  /** A chart of its own per apply: the objects a test adds. */
  const synth = (build: (scope: Chart) => void) => {
    const scope = new Chart(Testing.app(), 'objects', { namespace: APPS });
    build(scope);
    return Testing.synth(scope);
  };
  const readers = (name: string, claimName: string, replicas: number) => synth((scope) => {
    const claim = kplus.PersistentVolumeClaim.fromClaimName(scope, 'Claim', claimName);
    new kplus.Deployment(scope, 'Readers', {
      metadata: { name },
      replicas,
      securityContext: { user: 65532, group: 65532, ensureNonRoot: true },
      containers: [{
        name: 'main',
        image: NODE_IMAGES.busybox,
        imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
        // Prints the artifact, then proves the mount is read-only.
        command: ['sh', '-c', 'cat /models/model.bin; touch /models/x 2>&1 | grep -o "Read-only file system"; sleep 3600'],
        volumeMounts: [{ path: '/models', volume: kplus.Volume.fromPersistentVolumeClaim(scope, 'Models', claim, { readOnly: true }), readOnly: true }],
        securityContext: { user: 65532, group: 65532, ensureNonRoot: true, readOnlyRootFilesystem: true },
        resources: { cpu: { request: kplus.Cpu.millis(10) }, memory: { request: Size.mebibytes(16), limit: Size.mebibytes(64) } },
      }],
    });
  });
  const readersPrint = (name: string, replicas: number) => cluster.until(`${replicas} pods of ${name} to print the artifact`, 180_000, () => {
    const pods = cluster.getJson(['get', 'pods', '-n', APPS]).items
      .filter((p: any) => p.metadata.name.startsWith(`${name}-`) && p.status.phase === 'Running');
    const logs = pods.map((p: any) => cluster.kubectl(['logs', '-n', APPS, p.metadata.name]).output);
    return pods.length === replicas && logs.every((l: string) => l === `${content}Read-only file system\n`) ? pods : undefined;
  }).catch((err) => { throw new Error(`${err.message}\n${describeAll()}`); });

  beforeAll(async () => {
    await cluster.settle();
    chart = new Chart(Testing.app(), 'pv', { namespace: SYSTEM });
    const driver = new OrasCsiDriver(chart, 'Driver', { name: DRIVER });
    storageClass = driver.addStorageClass('Artifacts', { name: 'oras-pv-artifacts', registry, reclaimPolicy: OrasReclaimPolicy.DELETE });
    driver.persistentVolume(chart, 'Static', registry.artifact('models/demo', 'v1'), { name: 'oras-pv-static', claimName: 'static', namespace: APPS });
    cluster.apply({
      objects: [
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: SYSTEM, labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } } },
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: APPS } },
      ],
    });
    const address = await cluster.deployRegistry(APPS, 120);
    orasPushFile(`${address}/models/demo:v1`, 'model.bin', content);
    cluster.apply({ objects: Testing.synth(chart) });
    for (const workload of [`daemonset/${ApiName.daemonSet}`, `deployment/${ApiName.provisioner}`]) {
      cluster.kubectlOk(['rollout', 'status', '-n', SYSTEM, workload, '--timeout=180s'], { timeoutMs: 190_000 });
    }
  }, 600_000);

  afterAll(async () => {
    cluster.kubectl(['delete', 'deployment', '-n', APPS, '--all', '--wait=true', '--timeout=90s'], { timeoutMs: 100_000 });
    cluster.kubectl(['delete', 'pvc', '-n', APPS, '--all', '--wait=true', '--timeout=90s'], { timeoutMs: 100_000 });
    // The provisioner deletes what it provisioned before it goes.
    await cluster.until('the provisioned PersistentVolumes to go', 90_000, () => (cluster.getJson(['get', 'pv']).items as any[])
      .every((pv) => pv.spec.csi?.driver !== DRIVER || pv.spec.persistentVolumeReclaimPolicy === 'Retain')).catch(() => undefined);
    cluster.kubectl(['delete', '-f', '-', '--wait=true', '--timeout=120s'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: Testing.synth(chart) }), timeoutMs: 130_000 });
    cluster.kubectl(['delete', 'namespace', APPS, SYSTEM, '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
  }, 600_000);

  test('a claim of the StorageClass binds: CreateVolume checked the artifact and the PersistentVolume carries its attributes', async () => {
    cluster.apply({ objects: synth((scope) => storageClass.claim(scope, 'Models', { name: 'models', artifact: registry.artifact('models/demo', 'v1') })) });
    await cluster.until('claim models to bind', 120_000, () => claimPhase('models') === 'Bound').catch((err) => {
      throw new Error(`${err.message}\n${events('models').join('\n')}\n${describeAll()}`);
    });
    const pv = cluster.getJson(['get', 'pv', cluster.getJson(['get', 'pvc', '-n', APPS, 'models']).spec.volumeName]);
    expect(pv.spec.csi).toMatchObject({
      driver: DRIVER,
      volumeHandle: expect.stringMatching(/^oras-[0-9a-f]{40}$/),
      volumeAttributes: { 'oras.artifact.reference': `oras.${APPS}.svc:5000/models/demo:v1`, 'oras.options.plainhttp': 'true' },
    });
    expect(pv.spec.accessModes).toEqual(['ReadOnlyMany']);
    expect(provisionerLog()).toMatch(/"method":"CreateVolume".*"code":"OK"/);
  });

  test('a Deployment of 2 replicas mounts the claim read-only and reads the artifact; the registry serves each blob once', async () => {
    cluster.apply({ objects: readers('models-readers', 'models', 2) });
    await readersPrint('models-readers', 2);
    const gets = blobGets();
    expect(Object.keys(gets).length).toBeGreaterThan(0);
    expect(Object.values(gets).every((n) => n === 1)).toBe(true);
  });

  test('the static PersistentVolume is bound to its claim and mounts with no provisioner involved', async () => {
    // The PersistentVolume controller binds the pair within its next sync, with no provisioner.
    await cluster.until('claim static to bind', 60_000, () => claimPhase('static') === 'Bound');
    expect(cluster.getJson(['get', 'pvc', '-n', APPS, 'static']).spec.volumeName).toBe('oras-pv-static');
    cluster.apply({ objects: readers('static-reader', 'static', 1) });
    await readersPrint('static-reader', 1);
    expect(provisionerLog()).not.toContain('oras-pv-static');
  });

  test('a claim that names a missing artifact stays Pending with an event that says so; a writable claim is told to ask ReadOnlyMany', async () => {
    cluster.apply({ objects: synth((scope) => storageClass.claim(scope, 'Missing', { name: 'missing', artifact: registry.artifact('models/missing', 'v1') })) });
    const failed = await cluster.until('a ProvisioningFailed event on claim missing', 120_000, () => events('missing').find((e) => e.startsWith('ProvisioningFailed')));
    expect(failed).toMatch(/NotFound.*models\/missing:v1.*does not exist in the registry/);
    expect(claimPhase('missing')).toBe('Pending');

    const writable = synth((scope) => storageClass.claim(scope, 'Writable', { name: 'writable', artifact: registry.artifact('models/demo', 'v1') }));
    writable[0].spec.accessModes = ['ReadWriteOnce'];
    cluster.apply({ objects: writable });
    const refused = await cluster.until('a ProvisioningFailed event on claim writable', 120_000, () => events('writable').find((e) => e.startsWith('ProvisioningFailed')));
    expect(refused).toMatch(/InvalidArgument.*accessModes must be \[ReadOnlyMany\]/);
  });

  test('deleting the claim runs DeleteVolume, and the PersistentVolume goes', async () => {
    const volume = cluster.getJson(['get', 'pvc', '-n', APPS, 'models']).spec.volumeName;
    cluster.kubectlOk(['delete', 'deployment', '-n', APPS, 'models-readers', '--wait=true', '--timeout=90s'], { timeoutMs: 100_000 });
    cluster.kubectlOk(['delete', 'pvc', '-n', APPS, 'models', '--wait=true', '--timeout=90s'], { timeoutMs: 100_000 });
    await cluster.until(`PersistentVolume ${volume} to go`, 120_000, () => cluster.kubectl(['get', 'pv', volume]).status !== 0);
    expect(provisionerLog()).toMatch(/"method":"DeleteVolume".*"code":"OK"/);
  });
});

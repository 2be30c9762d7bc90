import { randomBytes } from 'crypto';
import { readFileSync } from 'fs';
import { join } from 'path';
import { Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { parseAllDocuments } from 'yaml';
import { OrasCsiDriver, OrasRegistry } from '../../src';
import { NODE_IMAGES } from '../util/images';
import { KubeCluster, orasPushFile } from '../util/kube-node';
import { describeOnNode } from '../util/node';

const root = join(__dirname, '..', '..');
const bundle = join(root, 'dist', 'oras-csi-driver.yaml');
const DRIVER = 'csi.oras.land';

/** The namespace and name of the plugin DaemonSet in the bundle. */
function pluginDaemonSet(): { namespace: string; name: string } {
  const daemonSet = parseAllDocuments(readFileSync(bundle, 'utf8')).map((d) => d.toJSON()).find((o) => o?.kind === 'DaemonSet');
  return { namespace: daemonSet.metadata.namespace, name: daemonSet.metadata.name };
}

/** Mount points in this (the kubelet's) mount namespace under a pod's directory. */
function mountsOfPod(uid: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((t) => t.includes(`/pods/${uid}/`));
}

describeOnNode('the CSI driver on a Kubernetes node (dist/oras-csi-driver.yaml)', (cluster: KubeCluster) => {
  const content = `model ${randomBytes(8).toString('hex')}\n`;
  const plugin = pluginDaemonSet();
  let address = '';

  const registeredDrivers = () => (cluster.getJson(['get', 'csinode', 'oras-node']).spec.drivers ?? []).map((d: any) => d.name);
  const podIsRunning = (namespace: string, name: string) => cluster.until(`pod ${namespace}/${name} to run`, 120_000, () => {
    const pod = cluster.getJson(['get', 'pod', '-n', namespace, name]);
    return pod.status.phase === 'Running' ? pod : undefined;
  }).catch((err) => { throw new Error(`${err.message}\n${cluster.describe(namespace)}\n${cluster.describe(plugin.namespace)}`); });

  /** A pod of our own that mounts the demo artifact and prints it. */
  function readerPod(name: string): any {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver');
    const volume = driver.volume(chart, 'Models', OrasRegistry.fromHost('oras.default.svc:5000', { plainHttp: true }).artifact('models/demo', 'v1'), { name: 'models' });
    new kplus.Pod(chart, 'Reader', {
      metadata: { name, namespace: 'default' },
      securityContext: { user: 65532, group: 65532, ensureNonRoot: true },
      containers: [{
        name: 'main',
        image: NODE_IMAGES.busybox,
        imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
        command: ['sh', '-c', 'cat /models/model.bin && sleep 3600'],
        volumeMounts: [{ path: '/models', volume, readOnly: true }],
        securityContext: { user: 65532, group: 65532, ensureNonRoot: true, readOnlyRootFilesystem: true },
      }],
    });
    return Testing.synth(chart).find((o) => o.kind === 'Pod');
  }

  /** GETs of each blob of models/demo in the registry's log. */
  function blobGets(): Record<string, number> {
    const log = cluster.kubectlOk(['logs', '-n', 'default', 'deployment/oras']);
    const counts: Record<string, number> = {};
    for (const match of log.matchAll(/"GET \/v2\/models\/demo\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/1\.1" 200/g)) counts[match[1]] = (counts[match[1]] ?? 0) + 1;
    return counts;
  }

  beforeAll(async () => {
    address = await cluster.deployRegistry('default', 120);
    orasPushFile(`${address}/models/demo:v1`, 'model.bin', content);
    cluster.kubectlOk(['apply', '-f', bundle]);
  });

  afterAll(async () => {
    cluster.kubectl(['delete', 'pod', '-n', 'default', 'reader-1', 'reader-2', 'reader-3', '--ignore-not-found', '--wait=true', '--timeout=60s']);
    await cluster.deleteCsiClaims();
    cluster.kubectl(['delete', '-f', bundle, '--ignore-not-found', '--wait=true', '--timeout=120s']);
    cluster.kubectl(['delete', '-n', 'default', '-f', join(root, 'dist', 'oras-registry.yaml'), '--wait=true', '--timeout=60s']);
  });

  test('the plugin registers itself: the CSINode lists the driver', async () => {
    cluster.kubectlOk(['rollout', 'status', '-n', plugin.namespace, `daemonset/${plugin.name}`, '--timeout=120s'], { timeoutMs: 130_000 });
    await cluster.until(`CSINode to list ${DRIVER}`, 60_000, () => registeredDrivers().includes(DRIVER));
  });

  test('the demo pod and a second pod read the artifact; the registry serves each blob once', async () => {
    await podIsRunning('default', 'oras-csi-demo');
    await cluster.until('the demo pod to list the artifact', 30_000, () => cluster.kubectlOk(['logs', '-n', 'default', 'oras-csi-demo']).includes('model.bin'));
    cluster.apply({ objects: [readerPod('reader-1')] });
    await podIsRunning('default', 'reader-1');
    await cluster.until('reader-1 to print the model', 30_000, () => cluster.kubectlOk(['logs', '-n', 'default', 'reader-1']) === content);
    const gets = blobGets();
    expect(Object.keys(gets).length).toBeGreaterThan(0);
    expect(Object.values(gets).every((n) => n === 1)).toBe(true);
  });

  test('deleting the pods leaves no mount behind', async () => {
    const uids = ['oras-csi-demo', 'reader-1'].map((name) => cluster.getJson(['get', 'pod', '-n', 'default', name]).metadata.uid);
    expect(uids.map(mountsOfPod).every((m) => m.length > 0)).toBe(true);
    cluster.kubectlOk(['delete', 'pod', '-n', 'default', 'oras-csi-demo', 'reader-1', '--wait=true', '--timeout=90s'], { timeoutMs: 100_000 });
    await cluster.until('the pods\' mounts to go', 30_000, () => uids.every((uid) => mountsOfPod(uid).length === 0));
  });

  test('a deleted plugin pod comes back, registers again, and serves new pods', async () => {
    const [old] = cluster.getJson(['get', 'pods', '-n', plugin.namespace, '-l', 'app.kubernetes.io/name=oras-csi-driver']).items;
    cluster.kubectlOk(['delete', 'pod', '-n', plugin.namespace, old.metadata.name, '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });
    const replacement = await cluster.until('the DaemonSet to start a new plugin pod', 120_000, () => cluster.getJson(['get', 'pods', '-n', plugin.namespace, '-l', 'app.kubernetes.io/name=oras-csi-driver'])
      .items.find((p: any) => p.metadata.uid !== old.metadata.uid && p.status.containerStatuses?.every((c: any) => c.ready)));
    expect(replacement.metadata.uid).not.toBe(old.metadata.uid);
    await cluster.until(`CSINode to list ${DRIVER} again`, 60_000, () => registeredDrivers().includes(DRIVER));
    cluster.apply({ objects: [readerPod('reader-2')] });
    await podIsRunning('default', 'reader-2');
    await cluster.until('reader-2 to print the model', 30_000, () => cluster.kubectlOk(['logs', '-n', 'default', 'reader-2']) === content);
    // The node cache survived the restart: still one download per blob.
    expect(Object.values(blobGets()).every((n) => n === 1)).toBe(true);
  });

  test('kubectl delete -f of the bundle while its demo pod mounts a volume: the plugin drains, nothing stays Terminating, no mount is left', async () => {
    cluster.kubectlOk(['delete', 'pod', '-n', 'default', 'reader-2', '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });
    cluster.kubectlOk(['apply', '-f', bundle]);
    const demo = await podIsRunning('default', 'oras-csi-demo');
    expect(mountsOfPod(demo.metadata.uid).length).toBeGreaterThan(0);
    // The claims first, as the README says: the provisioner deletes its PersistentVolumes only while it runs.
    cluster.kubectlOk(['delete', '-n', 'default', 'deployment/oras-csi-readers', 'pvc/models', 'pvc/models-static', '--wait=true', '--timeout=120s'],
      { timeoutMs: 130_000 });
    const deleted = cluster.kubectl(['delete', '-f', bundle, '--ignore-not-found', '--wait=true', '--timeout=90s'], { timeoutMs: 100_000 });
    expect({ status: deleted.status, output: deleted.output }).toEqual({ status: 0, output: expect.stringContaining('pod "oras-csi-demo" deleted') });
    expect(mountsOfPod(demo.metadata.uid)).toEqual([]);
  });
});

import { readdirSync } from 'fs';
import { join } from 'path';
import { KubeCluster, orasPushFile } from '../util/kube-node';
import { describeOnNode } from '../util/node';

const root = join(__dirname, '..', '..');
const dist = join(root, 'dist');
const bundles = readdirSync(dist).filter((f) => f.endsWith('.yaml')).sort();

/** Pods a controller keeps: they must come back when deleted. */
const controlled = (pod: any) => (pod.metadata.ownerReferences ?? []).some((o: any) => ['ReplicaSet', 'DaemonSet', 'StatefulSet'].includes(o.kind));
const ready = (pod: any) => pod.status.phase === 'Running' && (pod.status.containerStatuses ?? []).every((c: any) => c.ready);

describeOnNode('kubectl apply -f dist/ on a Kubernetes node', (cluster: KubeCluster) => {
  const pods = () => cluster.getJson(['get', 'pods', '--all-namespaces']).items as any[];
  const allReady = (what: string) => cluster.until(what, 240_000, () => {
    const current = pods().filter((p) => !(p.metadata.ownerReferences ?? []).some((o: any) => o.kind === 'Job'));
    return current.length > 0 && current.every(ready) ? current : undefined;
  }).catch((err) => { throw new Error(`${err.message}\n${['default', 'oras-system', 'oras-csi'].map((ns) => cluster.describe(ns)).join('\n')}`); });

  /** What the README tells users to do: the demo pod mounts models/demo:v1. */
  async function pushDemoModel(): Promise<void> {
    orasPushFile(`${await cluster.serviceAddress('default', 'oras', 5000)}/models/demo:v1`, 'model.bin', 'weights\n');
  }

  afterAll(async () => {
    await cluster.deleteCsiClaims();
    cluster.kubectl(['delete', '-f', dist, '--wait=true', '--timeout=180s'], { timeoutMs: 200_000 });
  });

  test('every bundle at once, last file first: all pods become Ready and the Jobs complete', async () => {
    expect(bundles.length).toBeGreaterThanOrEqual(4);
    // The order kubectl would not choose; the default (alphabetical) is used below.
    cluster.kubectlOk(['apply', ...[...bundles].reverse().flatMap((b) => ['-f', join(dist, b)])]);
    // The CSI demo pod mounts models/demo:v1, which the README tells users to push.
    cluster.kubectlOk(['rollout', 'status', '-n', 'default', 'deployment/oras', '--timeout=180s'], { timeoutMs: 190_000 });
    await pushDemoModel();
    await allReady('every pod of dist/ to be Ready');
    expect(await cluster.jobOutcomes('default', ['hello-greeting-r0example', 'hello-subject-r0example', 'hello-combine-r0example'], 180_000))
      .toEqual({ 'hello-greeting-r0example': 'Complete', 'hello-subject-r0example': 'Complete', 'hello-combine-r0example': 'Complete' });
  });

  test('the webhook\'s namespace stays restricted and the CSI plugin\'s is privileged, whatever the order', () => {
    const enforce = (ns: string) => cluster.getJson(['get', 'namespace', ns]).metadata.labels['pod-security.kubernetes.io/enforce'];
    const csiNamespace = pods().find((p) => p.metadata.labels?.['app.kubernetes.io/name'] === 'oras-csi-driver').metadata.namespace;
    const webhookNamespace = pods().find((p) => p.metadata.labels?.['app.kubernetes.io/name'] === 'oras-webhook').metadata.namespace;
    expect(csiNamespace).not.toBe(webhookNamespace);
    expect({ webhook: enforce(webhookNamespace), csi: enforce(csiNamespace) }).toEqual({ webhook: 'restricted', csi: 'privileged' });
  });

  test('a second apply changes nothing but the suspend flag of Jobs their producers resumed; finished, they stay finished', () => {
    const objects = () => cluster.getJson(['get', '-f', dist]).items as any[];
    const key = (o: any) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
    // Client-side kubectl apply sets every field of the file again, spec.suspend of a resumed Job included.
    const resumed = (o: any) => o.kind === 'Job' && o.metadata.annotations?.['oras.land/waits-for'] !== undefined;
    const before = Object.fromEntries(objects().map((o) => [key(o), o.metadata.resourceVersion]));
    expect(Object.keys(before).length).toBeGreaterThan(15);
    const podsBefore = cluster.getJson(['get', 'pods', '-n', 'default', '-l', 'oras.land/workflow=hello']).items.map((p: any) => p.metadata.name).sort();
    cluster.kubectlOk(['apply', '-f', dist]);
    const after = objects();
    expect(Object.fromEntries(after.filter((o) => !resumed(o)).map((o) => [key(o), o.metadata.resourceVersion])))
      .toEqual(Object.fromEntries(Object.entries(before).filter(([k]) => !after.some((o) => resumed(o) && key(o) === k))));
    for (const job of after.filter(resumed)) {
      expect(job.status.conditions.some((c: any) => c.type === 'Complete' && c.status === 'True')).toBe(true);
    }
    expect(cluster.getJson(['get', 'pods', '-n', 'default', '-l', 'oras.land/workflow=hello']).items.map((p: any) => p.metadata.name).sort()).toEqual(podsBefore);
    const diff = cluster.kubectl(['diff', '-f', dist]);
    expect({ status: diff.status, output: diff.output }).toEqual({ status: 0, output: '' });
  });

  test('every pod comes back: controllers recreate theirs, and a new apply recreates the bare demo pod', async () => {
    const before = pods().filter(controlled);
    expect(before.map((p) => p.metadata.labels['app.kubernetes.io/name']).sort())
      .toEqual(['oras-csi-driver', 'oras-csi-provisioner', 'oras-csi-readers', 'oras-csi-readers', 'oras-registry', 'oras-webhook', 'oras-webhook']);
    for (const pod of before) {
      const name = pod.metadata.labels['app.kubernetes.io/name'];
      cluster.kubectlOk(['delete', 'pod', '-n', pod.metadata.namespace, pod.metadata.name, '--wait=true', '--timeout=90s'], { timeoutMs: 100_000 });
      await cluster.until(`a replacement of ${pod.metadata.name}`, 180_000, () => pods().some((p) => controlled(p) && ready(p)
        && p.metadata.labels['app.kubernetes.io/name'] === name && !before.some((b) => b.metadata.uid === p.metadata.uid)))
        .catch((err) => { throw new Error(`${err.message}\n${cluster.describe('default')}`); });
      // The registry keeps blobs in an emptyDir: its new pod starts empty, and the CSI volumes resolve their tag on every mount.
      if (name === 'oras-registry') await pushDemoModel();
    }
    cluster.kubectlOk(['delete', 'pod', '-n', 'default', 'oras-csi-demo', '--wait=true', '--timeout=90s'], { timeoutMs: 100_000 });
    cluster.kubectlOk(['apply', '-f', dist]);
    const after = await allReady('every pod to be Ready again');
    expect(after.filter((p) => before.some((b) => b.metadata.uid === p.metadata.uid))).toEqual([]);
    expect(after.map((p) => p.metadata.name)).toContain('oras-csi-demo');
  });
});

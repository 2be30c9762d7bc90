import { randomBytes } from 'crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Size, Testing } from 'cdk8s';
import { push } from '../../runtime/oci/push';
import { parseReference } from '../../runtime/oci/reference';
import { RegistryClient } from '../../runtime/oci/registry-client';
import { OrasRegistry, RegistryStorage } from '../../src';
import { PROVENANCE } from '../../src/injection';
import { KubeCluster } from '../util/kube-node';
import { describeOnNode, useNamespace } from '../util/node';
import { requirePeer, run } from '../util/peers';

/** Bytes under a directory, as `du` counts them on disk. */
function diskBytes(dir: string): number {
  return Number(run('du', ['-sb', dir]).stdout.split('\t')[0]);
}

describeOnNode('registry retention on a Kubernetes node', (cluster: KubeCluster) => {
  const namespace = useNamespace(cluster, 'retention');
  let volume = '';
  let scratch = '';

  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), 'oras-retention-'));
    volume = join(scratch, 'volume');
    mkdirSync(volume, { mode: 0o777 });
    run('chmod', ['0777', volume]);
  });
  afterAll(() => {
    cluster.kubectl(['delete', 'namespace', namespace.name, '--ignore-not-found', '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
    cluster.kubectl(['delete', 'persistentvolume', `${namespace.name}-registry`, '--ignore-not-found']);
    rmSync(scratch, { recursive: true, force: true });
  });

  test('the prune CronJob deletes expired runs, the restarted registry collects their blobs, the disk usage goes down, kept runs pull byte for byte', async () => {
    cluster.apply({
      objects: [{
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name: `${namespace.name}-registry` },
        spec: { capacity: { storage: '1Gi' }, accessModes: ['ReadWriteOnce'], persistentVolumeReclaimPolicy: 'Retain', hostPath: { path: volume, type: 'Directory' } },
      }],
    });
    const chart = Testing.chart();
    new OrasRegistry(chart, 'Registry', {
      name: 'oras',
      storage: RegistryStorage.persistentVolumeClaim({ size: Size.gibibytes(1) }),
      retention: { keepLast: 1 },
    });
    cluster.apply({ objects: Testing.synth(chart), namespace: namespace.name });
    cluster.kubectlOk(['rollout', 'status', '-n', namespace.name, 'deployment/oras', '--timeout=180s'], { timeoutMs: 190_000 });
    let address = await cluster.serviceAddress(namespace.name, 'oras', 5000);

    // Three runs of one workflow, 2 MiB each, an hour apart.
    const runs = ['n1', 'n2', 'n3'];
    const data = new Map<string, Buffer>();
    for (const [i, runId] of runs.entries()) {
      const dir = mkdtempSync(join(scratch, 'out-'));
      data.set(runId, randomBytes(2 * 1024 * 1024));
      writeFileSync(join(dir, 'data.bin'), data.get(runId)!);
      const created = new Date(Date.now() - (3 - i) * 3600_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      const client = new RegistryClient(address, { plainHttp: true });
      await push(client, parseReference(`${address}/nightly/train:${runId}-output`), [{ path: 'data.bin' }], {
        cwd: dir,
        annotations: { $manifest: { [PROVENANCE.WORKFLOW]: 'nightly', [PROVENANCE.RUN_ID]: runId, 'org.opencontainers.image.created': created } },
      }).finally(() => client.close());
    }
    const before = diskBytes(volume);
    const podBefore = cluster.getJson(['get', 'pods', '-n', namespace.name, '-l', 'app.kubernetes.io/name=oras-registry']).items[0].metadata.name;

    cluster.kubectlOk(['create', 'job', '-n', namespace.name, 'prune-now', '--from=cronjob/oras-prune']);
    expect(await cluster.jobOutcomes(namespace.name, ['prune-now'], 120_000)).toEqual({ 'prune-now': 'Complete' });
    const log = cluster.kubectlOk(['logs', '-n', namespace.name, 'job/prune-now']);
    expect(log).toMatch(/"runsExpired":2/);
    expect(log).toMatch(/garbage-collection/);

    // The restart: a new pod, whose init container collected the blobs before the registry served.
    await cluster.until('the registry restarted', 180_000, () => {
      const pods = cluster.getJson(['get', 'pods', '-n', namespace.name, '-l', 'app.kubernetes.io/name=oras-registry']).items;
      return pods.length === 1 && pods[0].metadata.name !== podBefore && pods[0].status.containerStatuses?.[0]?.ready;
    });
    const collector = cluster.kubectlOk(['logs', '-n', namespace.name, 'deployment/oras', '-c', 'collect-garbage']);
    expect(collector).toMatch(/blob eligible for deletion|Deleting blob/);
    const after = diskBytes(volume);
    expect(before - after).toBeGreaterThan(2 * 2 * 1024 * 1024);

    address = await cluster.serviceAddress(namespace.name, 'oras', 5000);
    for (const runId of runs) {
      const out = mkdtempSync(join(scratch, 'pull-'));
      const pulled = run(requirePeer('oras'), ['pull', '--plain-http', `${address}/nightly/train:${runId}-output`, '-o', out]);
      if (runId === 'n3') {
        expect(pulled.status).toBe(0);
        expect(readFileSync(join(out, 'data.bin')).equals(data.get(runId)!)).toBe(true);
      } else {
        expect(pulled.output).toMatch(/not found/i);
      }
    }
  });
});

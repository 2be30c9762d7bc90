import { ApiObject, Chart, Size, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { OrasCsiDriver, OrasPullPolicy, OrasRegistry } from '../src';
import { expectValidKubernetes } from './util/kubernetes-schema';

describe('OrasPersistentVolume', () => {
  test('a static PersistentVolume with the attributes of an inline volume, and a claim bound to it both ways; no provisioner', () => {
    const chart = new Chart(Testing.app(), 'apps', { namespace: 'ml' });
    const driver = new OrasCsiDriver(chart, 'Driver', { namespace: 'oras-csi' });
    const creds = kplus.Secret.fromSecretName(chart, 'Creds', 'registry-creds');
    const registry = OrasRegistry.fromHost('registry.example.com', { credentials: creds });
    const volume = driver.persistentVolume(chart, 'Models', registry.artifact('models/demo', 'v1'), {
      name: 'models-v1', claimName: 'models', pullPolicy: OrasPullPolicy.NEVER, storage: Size.gibibytes(2),
    });
    const manifests = Testing.synth(chart);
    expectValidKubernetes(manifests);
    expect(manifests.find((m) => m.kind === 'Deployment')).toBeUndefined();
    const pv = manifests.find((m) => m.kind === 'PersistentVolume');
    expect(pv).toEqual({
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: 'models-v1', labels: { 'app.kubernetes.io/part-of': 'cdk8s-oras' } },
      spec: {
        capacity: { storage: '2Gi' },
        accessModes: ['ReadOnlyMany'],
        persistentVolumeReclaimPolicy: 'Retain',
        storageClassName: '',
        claimRef: { namespace: 'ml', name: 'models' },
        csi: {
          driver: 'csi.oras.land',
          volumeHandle: expect.stringMatching(/^oras-static-c8[0-9a-f]{40}$/),
          readOnly: true,
          volumeAttributes: {
            'oras.artifact.reference': 'registry.example.com/models/demo:v1',
            'oras.options.pullpolicy': 'Never',
            'oras.options.plainhttp': 'false',
            'oras.options.insecure': 'false',
          },
          nodePublishSecretRef: { name: 'registry-creds', namespace: 'ml' },
        },
      },
    });
    expect(manifests.find((m) => m.kind === 'PersistentVolumeClaim')).toEqual({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'models', namespace: 'ml', labels: { 'app.kubernetes.io/part-of': 'cdk8s-oras' } },
      spec: { accessModes: ['ReadOnlyMany'], storageClassName: '', volumeName: 'models-v1', resources: { requests: { storage: '2Gi' } } },
    });
    expect(ApiObject.of(volume)).toBe(volume.persistentVolume);
    expect({ claimName: volume.claimName, namespace: volume.namespace }).toEqual({ claimName: 'models', namespace: 'ml' });
  });

  test('volume(): a pod mounts the claim read-only; two volumes get different handles and generated names', () => {
    const chart = new Chart(Testing.app(), 'apps', { namespace: 'ml' });
    const driver = new OrasCsiDriver(chart, 'Driver');
    const registry = OrasRegistry.fromHost('registry.example.com');
    const a = driver.persistentVolume(chart, 'A', registry.artifact('a', 'v1'));
    driver.persistentVolume(chart, 'B', registry.artifact('b', 'v1'));
    new kplus.Deployment(chart, 'Reader', {
      replicas: 2,
      containers: [{ image: 'docker.io/library/busybox:1.36.1', volumeMounts: [{ path: '/data', volume: a.volume(chart, 'Data'), readOnly: true }] }],
    });
    const manifests = Testing.synth(chart);
    const pod = manifests.find((m) => m.kind === 'Deployment').spec.template.spec;
    expect(pod.volumes).toEqual([{ name: expect.any(String), persistentVolumeClaim: { claimName: a.claimName, readOnly: true } }]);
    const handles = manifests.filter((m) => m.kind === 'PersistentVolume').map((m) => m.spec.csi.volumeHandle);
    expect(new Set(handles).size).toBe(2);
  });

  test('bad input fails the synth with the fix', () => {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver');
    expect(() => driver.persistentVolume(chart, 'Short', OrasRegistry.fromHost('registry:5000').artifact('a', 'v1'))).toThrow(/is a single label/);
    expect(() => driver.persistentVolume(chart, 'NoNamespace', OrasRegistry.fromHost('registry.example.com').artifact('a', 'v1')))
      .toThrow(/the claim needs a namespace \(the pods'\): set namespace, or give the chart one/);
  });
});

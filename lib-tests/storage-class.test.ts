import { ApiObject, Chart, Size, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { OrasCsiDriver, OrasPullPolicy, OrasReclaimPolicy, OrasRegistry, OrasStorageClassOptions, OrasVolumeBindingMode } from '../src';
import { expectValidKubernetes } from './util/kubernetes-schema';

function setUp(options: OrasStorageClassOptions = {}) {
  const chart = new Chart(Testing.app(), 'apps', { namespace: 'ml' });
  const driver = new OrasCsiDriver(chart, 'Driver', { namespace: 'oras-csi' });
  const creds = kplus.Secret.fromSecretName(chart, 'Creds', 'registry-creds');
  const registry = OrasRegistry.fromHost('registry.example.com:5000', { plainHttp: true, credentials: creds });
  return { chart, driver, registry, creds, storageClass: () => driver.addStorageClass('Models', options) };
}

describe('OrasStorageClass', () => {
  test('without an artifact each claim names its own: no parameters but the pull policy\'s absence, Delete, Immediate, never the default', () => {
    const { chart, driver } = setUp();
    const storageClass = driver.addStorageClass('Models');
    const manifests = Testing.synth(chart);
    expectValidKubernetes(manifests);
    const object = manifests.find((m) => m.kind === 'StorageClass');
    expect(object).toEqual({
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: storageClass.name, labels: { 'app.kubernetes.io/part-of': 'cdk8s-oras' } },
      provisioner: 'csi.oras.land',
      parameters: {},
      reclaimPolicy: 'Delete',
      volumeBindingMode: 'Immediate',
      allowVolumeExpansion: false,
    });
    expect(ApiObject.of(storageClass)).toBe(storageClass.storageClass);
  });

  test('a fixed artifact: the attributes of an inline volume, and the registry credentials for the provisioner and the node, in the claim\'s namespace', () => {
    const { chart, driver, registry } = setUp();
    driver.addStorageClass('Models', {
      name: 'models',
      artifact: registry.artifact('models/demo', 'v1'),
      pullPolicy: OrasPullPolicy.ALWAYS,
      mediaTypes: ['application/x-weights'],
      concurrency: 2,
      reclaimPolicy: OrasReclaimPolicy.RETAIN,
      volumeBindingMode: OrasVolumeBindingMode.WAIT_FOR_FIRST_CONSUMER,
      isDefault: true,
    });
    const object = Testing.synth(chart).find((m) => m.kind === 'StorageClass');
    expect(object.metadata).toMatchObject({ name: 'models', annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } });
    expect(object.parameters).toEqual({
      'oras.artifact.reference': 'registry.example.com:5000/models/demo:v1',
      'oras.options.pullpolicy': 'Always',
      'oras.artifact.layers.mediatype': 'application/x-weights',
      'oras.options.concurrency': '2',
      'oras.options.plainhttp': 'true',
      'oras.options.insecure': 'false',
      'csi.storage.k8s.io/provisioner-secret-name': 'registry-creds',
      'csi.storage.k8s.io/provisioner-secret-namespace': '${pvc.namespace}',
      'csi.storage.k8s.io/node-publish-secret-name': 'registry-creds',
      'csi.storage.k8s.io/node-publish-secret-namespace': '${pvc.namespace}',
    });
    expect(object).toMatchObject({ reclaimPolicy: 'Retain', volumeBindingMode: 'WaitForFirstConsumer' });
  });

  test('a registry without an artifact gives the transport and the credentials; explicit credentials win', () => {
    const { chart, driver, registry } = setUp();
    const other = kplus.Secret.fromSecretName(chart, 'Other', 'other-creds');
    driver.addStorageClass('Models', { registry, credentials: other });
    const parameters = Testing.synth(chart).find((m) => m.kind === 'StorageClass').parameters;
    expect(parameters).toMatchObject({ 'oras.options.plainhttp': 'true', 'csi.storage.k8s.io/provisioner-secret-name': 'other-creds' });
    expect(parameters['oras.artifact.reference']).toBeUndefined();
  });

  test('claim(): ReadOnlyMany of the class, annotated with its artifact when the class has none, in the chart\'s namespace', () => {
    const { chart, driver, registry } = setUp();
    const open = driver.addStorageClass('Open', { registry });
    const fixed = driver.addStorageClass('Fixed', { artifact: registry.artifact('models/demo', 'v1') });
    open.claim(chart, 'A', { name: 'data-a', artifact: registry.artifact('team/a', 'v2'), pullPolicy: OrasPullPolicy.NEVER, storage: Size.mebibytes(512) });
    fixed.claim(chart, 'B', { name: 'data-b', namespace: 'other' });
    const manifests = Testing.synth(chart);
    expectValidKubernetes(manifests);
    const claims = manifests.filter((m) => m.kind === 'PersistentVolumeClaim');
    expect(claims[0]).toEqual({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: {
        name: 'data-a',
        namespace: 'ml',
        annotations: { 'oras.artifact.reference': 'registry.example.com:5000/team/a:v2', 'oras.options.pullpolicy': 'Never' },
      },
      spec: { accessModes: ['ReadOnlyMany'], storageClassName: open.name, resources: { requests: { storage: '512Mi' } } },
    });
    expect(claims[1].metadata).toEqual({ name: 'data-b', namespace: 'other' });
    expect(claims[1].spec).toMatchObject({ storageClassName: fixed.name, resources: { requests: { storage: '1Gi' } } });
  });

  test('bad input fails the synth with the fix', () => {
    const { chart, driver, registry } = setUp();
    const artifact = registry.artifact('models/demo', 'v1');
    expect(() => driver.addStorageClass('Both', { artifact, registry })).toThrow(/give artifact or registry, not both/);
    expect(() => driver.addStorageClass('Empty', { mediaTypes: [] })).toThrow(/mediaTypes is empty/);
    const open = driver.addStorageClass('Open');
    const fixed = driver.addStorageClass('Fixed', { artifact });
    expect(() => open.claim(chart, 'NoArtifact')).toThrow(/names no artifact, so the claim must \(artifact\)/);
    expect(() => fixed.claim(chart, 'Other', { artifact: registry.artifact('other', 'v1') })).toThrow(/mounts "registry.example.com:5000\/models\/demo:v1" in every claim/);
    expect(() => fixed.claim(chart, 'Policy', { pullPolicy: OrasPullPolicy.ALWAYS })).toThrow(/sets the pull policy for its claims/);
    expect(() => open.claim(chart, 'Short', { artifact: OrasRegistry.fromHost('registry:5000').artifact('a', 'v1') })).toThrow(/is a single label/);
  });
});

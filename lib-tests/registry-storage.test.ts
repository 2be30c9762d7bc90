import { Size, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { OrasRegistry, RegistryStorage } from '../src';
import { expectValidKubernetes } from './util/kubernetes-schema';

function podOf(storage: RegistryStorage) {
  const chart = Testing.chart();
  new OrasRegistry(chart, 'Cache', { name: 'cache', storage });
  const manifests = Testing.synth(chart);
  expectValidKubernetes(manifests);
  return { manifests, pod: manifests.find((m) => m.kind === 'Deployment').spec.template.spec };
}

describe('RegistryStorage', () => {
  test('emptyDir takes a size limit', () => {
    const { pod } = podOf(RegistryStorage.emptyDir({ sizeLimit: Size.gibibytes(2) }));
    expect(pod.volumes).toEqual([{ name: 'storage', emptyDir: { sizeLimit: '2048Mi' } }]);
  });

  test('persistentVolumeClaim without a class leaves the cluster default', () => {
    const { manifests } = podOf(RegistryStorage.persistentVolumeClaim({ size: Size.gibibytes(1) }));
    const claim = manifests.find((m) => m.kind === 'PersistentVolumeClaim');
    expect(claim.spec.storageClassName).toBeUndefined();
    expect(claim.metadata.labels['app.kubernetes.io/instance']).toBe('cache');
  });

  test('persistentVolumeClaim needs a real size', () => {
    expect(() => RegistryStorage.persistentVolumeClaim({ size: Size.kibibytes(10) })).toThrow(/"size" is 10 KiB; it must be at least 1 MiB/);
  });

  test('existingClaim mounts the claim and creates none', () => {
    const chart = Testing.chart();
    const claim = kplus.PersistentVolumeClaim.fromClaimName(chart, 'Restored', 'restored-cache');
    new OrasRegistry(chart, 'Cache', { storage: RegistryStorage.existingClaim(claim) });
    const manifests = Testing.synth(chart);
    expect(manifests.some((m) => m.kind === 'PersistentVolumeClaim')).toBe(false);
    const pod = manifests.find((m) => m.kind === 'Deployment').spec.template.spec;
    expect(pod.volumes).toEqual([{ name: 'storage', persistentVolumeClaim: { claimName: 'restored-cache', readOnly: false } }]);
  });
});

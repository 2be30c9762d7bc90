import { ApiObject, App, Chart, JsonPatch, Size, Testing } from 'cdk8s';
import * as plus33 from 'cdk8s-plus-33';
import { OrasCsiDriver, OrasRegistry, OrasWebhook, OrasWorkflow } from '../src';
import { expectValidKubernetes } from './util/kubernetes-schema';

/**
 * An app on cdk8s-plus-33, the cdk8s-plus of the current `cdk8s init`
 * template, uses every construct: cdk8s-plus-33's own objects take the
 * registry's credentials, and its pods mount the driver's inline volumes
 * (`volumeConfig`), claims of its StorageClass and static volumes.
 */
describe('an app on cdk8s-plus-33', () => {
  function app() {
    const chart = new Chart(new App(), 'models', { namespace: 'ml' });
    const credentials = new plus33.Secret(chart, 'Credentials', { metadata: { name: 'registry-creds' }, type: 'kubernetes.io/dockerconfigjson' });
    const registry = OrasRegistry.fromHost('registry.example.com', { credentials });
    const driver = new OrasCsiDriver(chart, 'Driver', { namespace: 'oras-csi' });
    const storageClass = driver.addStorageClass('Artifacts', { name: 'oras-artifacts', registry });
    const claim = storageClass.claim(chart, 'ModelsClaim', { name: 'models', artifact: registry.artifact('models/demo', 'v1') });
    const pinned = driver.persistentVolume(chart, 'Pinned', registry.artifact('models/demo', 'v1'), { claimName: 'pinned' });
    const config = driver.volumeConfig(registry.artifact('models/demo', 'v1'), { name: 'inline' });

    const deployment = new plus33.Deployment(chart, 'Readers', { replicas: 2 });
    const container = deployment.addContainer({
      image: 'docker.io/library/busybox:1.36.1',
      command: ['sh', '-c', 'ls -R /inline /claimed /pinned'],
      resources: { cpu: { request: plus33.Cpu.millis(10) }, memory: { request: Size.mebibytes(16) } },
    });
    container.mount('/inline', plus33.Volume.fromCsi(chart, 'Inline', config.driver, config), { readOnly: true });
    const claimed = plus33.PersistentVolumeClaim.fromClaimName(chart, 'ClaimedRef', claim.name);
    container.mount('/claimed', plus33.Volume.fromPersistentVolumeClaim(chart, 'Claimed', claimed, { readOnly: true }), { readOnly: true });
    const pinnedClaim = plus33.PersistentVolumeClaim.fromClaimName(chart, 'PinnedRef', pinned.claimName);
    container.mount('/pinned', plus33.Volume.fromPersistentVolumeClaim(chart, 'PinnedVolume', pinnedClaim, { readOnly: true }), { readOnly: true });
    // cdk8s-plus has no option for a CSI volume's secret in any version: the config names it.
    ApiObject.of(deployment).addJsonPatch(JsonPatch.add('/spec/template/spec/volumes/0/csi/nodePublishSecretRef', { name: config.nodePublishSecretName }));

    const workflow = new OrasWorkflow(chart, 'Flow', { registry, runId: 'r1', graph: false });
    workflow.addStep('hello', { image: 'docker.io/library/busybox:1.36.1', command: ['sh', '-c', 'echo hi > /out/hi.txt'], output: { path: '/out' } });
    new OrasWebhook(chart, 'Webhook', { namespace: 'oras-system' });
    return Testing.synth(chart);
  }

  test('synthesizes valid objects, and the pods mount all three kinds of volumes read-only with the credentials', () => {
    const objects = app();
    expectValidKubernetes(objects);
    const pod = objects.find((o) => o.kind === 'Deployment' && o.metadata.name.includes('readers')).spec.template.spec;
    expect(pod.volumes).toEqual([
      {
        name: 'inline',
        csi: {
          driver: 'csi.oras.land',
          readOnly: true,
          volumeAttributes: {
            'oras.artifact.reference': 'registry.example.com/models/demo:v1',
            'oras.options.pullpolicy': 'IfNotPresent',
            'oras.options.plainhttp': 'false',
            'oras.options.insecure': 'false',
          },
          nodePublishSecretRef: { name: 'registry-creds' },
        },
      },
      { name: expect.any(String), persistentVolumeClaim: { claimName: 'models', readOnly: true } },
      { name: expect.any(String), persistentVolumeClaim: { claimName: 'pinned', readOnly: true } },
    ]);
    const kinds = new Set(objects.map((o) => o.kind));
    for (const kind of ['CSIDriver', 'DaemonSet', 'StorageClass', 'PersistentVolume', 'PersistentVolumeClaim', 'Job', 'MutatingWebhookConfiguration']) {
      expect(kinds).toContain(kind);
    }
    // The step's Job took the registry's credentials from the cdk8s-plus-33 Secret.
    const job = objects.find((o) => o.kind === 'Job');
    expect(JSON.stringify(job)).toContain('registry-creds');
  });

  test('volumeConfig checks as volume() does', () => {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver');
    expect(() => driver.volumeConfig(OrasRegistry.fromHost('registry:5000').artifact('a', 'v1'))).toThrow(/is a single label/);
    expect(() => driver.volumeConfig(OrasRegistry.fromHost('registry.example.com').artifact('a', 'v1'), { name: 'Not A Label' })).toThrow(/must be a DNS label/);
    expect(driver.volumeConfig(OrasRegistry.fromHost('registry.example.com').artifact('a', 'v1'))).toEqual({
      driver: 'csi.oras.land',
      readOnly: true,
      attributes: {
        'oras.artifact.reference': 'registry.example.com/a:v1',
        'oras.options.pullpolicy': 'IfNotPresent',
        'oras.options.plainhttp': 'false',
        'oras.options.insecure': 'false',
      },
    });
  });
});

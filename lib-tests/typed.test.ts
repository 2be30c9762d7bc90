import { ApiObject, JsonPatch, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { OrasCsiDriver, OrasRegistry, OrasWebhook } from '../src';
import { patchable } from '../src/typed';

/** A bare quantity where the typed schema wants `{ value }`, and a field the schema does not know. */
const patches = (container: string) => [
  JsonPatch.replace(`${container}/resources/limits/memory`, '1Gi'),
  JsonPatch.add(`${container}/notInTheSchema`, 'kept'),
];

describe('typed objects keep their JSON patches', () => {
  test('cdk8s alone applies a typed object\'s patches before its conversion, and drops both (why patchable exists)', () => {
    const chart = Testing.chart();
    new kplus.k8s.KubePod(chart, 'Bare', {
      spec: { containers: [{ name: 'c', image: 'busybox', resources: { limits: { memory: kplus.k8s.Quantity.fromString('64Mi') } } }] },
    }).addJsonPatch(...patches('/spec/containers/0'));
    const container = Testing.synth(chart)[0].spec.containers[0];
    expect({ memory: container.resources.limits.memory, extra: container.notInTheSchema }).toEqual({ memory: undefined, extra: undefined });
  });

  test('patchable applies them to the rendered JSON, in cdk8s\'s key order', () => {
    const chart = Testing.chart();
    const pod = patchable(new kplus.k8s.KubePod(chart, 'Pod', {
      spec: { containers: [{ name: 'c', image: 'busybox', resources: { limits: { memory: kplus.k8s.Quantity.fromString('64Mi') } } }] },
    }));
    pod.addJsonPatch(...patches('/spec/containers/0'), JsonPatch.add('/spec/activeDeadlineSeconds', 60));
    const [json] = Testing.synth(chart);
    expect(json.spec.containers[0]).toMatchObject({ resources: { limits: { memory: '1Gi' } }, notInTheSchema: 'kept' });
    expect(Object.keys(json)).toEqual(['apiVersion', 'kind', 'metadata', 'spec']);
    expect(Object.keys(json.spec)).toEqual(['activeDeadlineSeconds', 'containers']);
  });

  test('the escape hatches of every construct\'s main objects keep bare quantities and fields the schema lacks', () => {
    const chart = Testing.chart();
    const driver = new OrasCsiDriver(chart, 'Driver', { provisioner: true });
    const webhook = new OrasWebhook(chart, 'Webhook');
    const storageClass = driver.addStorageClass('Models', { registry: OrasRegistry.fromHost('registry.example.com') });
    ApiObject.of(driver).addJsonPatch(...patches('/spec/template/spec/containers/0'));
    driver.provisioner!.addJsonPatch(...patches('/spec/template/spec/containers/1'));
    ApiObject.of(webhook).addJsonPatch(...patches('/spec/template/spec/containers/0'));
    ApiObject.of(storageClass).addJsonPatch(JsonPatch.add('/notInTheSchema', 'kept'));
    const objects = Testing.synth(chart);
    const container = (kind: string, name: string, index: number) =>
      objects.find((o) => o.kind === kind && o.metadata.name === name).spec.template.spec.containers[index];
    const patchedContainers = [
      container('DaemonSet', driver.workloadName, 0), container('Deployment', 'csi-oras-land-provisioner', 1), container('Deployment', webhook.name, 0),
    ];
    for (const patched of patchedContainers) {
      expect({ memory: patched.resources.limits.memory, extra: patched.notInTheSchema }).toEqual({ memory: '1Gi', extra: 'kept' });
    }
    expect(objects.find((o) => o.kind === 'StorageClass').notInTheSchema).toBe('kept');
  });
});

import { annotatedPod, annotations, reviewOf } from './local-webhook';
import { decodeReview, MalformedObject, podSpec, readPods } from '../../../runtime/webhook/admission-request';

describe('reading an AdmissionReview', () => {
  test.each([
    [null, /expected an admission\.k8s\.io\/v1 AdmissionReview with a request/],
    [[], /expected an admission\.k8s\.io\/v1 AdmissionReview/],
    [{ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: [] }, /expected an admission\.k8s\.io\/v1 AdmissionReview/],
    [{ ...reviewOf({}, 'u'), request: { uid: 'u', kind: 'Pod', object: {} } }, /request\.kind must be a group, version and kind, such as \{"group":"","version":"v1","kind":"Pod"\}/],
    [{ ...reviewOf({}, 'u'), request: { uid: 'u', kind: { kind: 'Service' }, object: {} } }, /admits Pods, Jobs and JobSets, not "Service"/],
    [{ ...reviewOf({}, 'u'), request: { uid: 'u', kind: { kind: 'Pod' }, object: [] } }, /the AdmissionReview request has no Pod object/],
  ])('refuses %j', (body, message) => {
    expect(() => decodeReview(body)).toThrow(message);
  });

  test('a Job\'s annotations go over its template\'s; its pod spec is under the template', () => {
    const job = {
      kind: 'Job',
      metadata: { name: 'j', annotations: annotations({ 'oras-cache': 'job' }) },
      spec: { template: { metadata: { annotations: annotations({ 'oras-cache': 'template', 'debug': 'true' }) }, spec: { containers: [] } } },
    };
    const [pod] = readPods(decodeReview(reviewOf(job)));
    expect(pod).toEqual({
      name: 'j',
      annotations: annotations({ 'oras-cache': 'job', 'debug': 'true' }),
      spec: { containers: [] },
      pointer: '/spec/template/spec',
      metadata: { pointer: '/spec/template/metadata', exists: true, annotations: annotations({ 'oras-cache': 'template', 'debug': 'true' }) },
    });
    expect(podSpec(pod)).toEqual({ containers: [] });
  });

  test('a Pod without a name uses its generateName; null lists count as absent', () => {
    const object = { ...annotatedPod({ 'oras-cache': 'c' }, { initContainers: null, volumes: null }), metadata: { generateName: 'p-' } };
    const [pod] = readPods(decodeReview(reviewOf(object)));
    expect(pod.name).toBe('p-');
    expect(() => podSpec(pod)).not.toThrow();
    expect(() => podSpec({ ...pod, spec: undefined })).toThrow(new MalformedObject('spec must be an object'));
  });

  test('a JobSet has one pod template per replicated Job, each under the JobSet\'s and its Job template\'s annotations', () => {
    const jobset = {
      apiVersion: 'jobset.x-k8s.io/v1alpha2',
      kind: 'JobSet',
      metadata: { name: 'js', annotations: annotations({ 'oras-cache': 'jobset' }) },
      spec: {
        replicatedJobs: [
          { name: 'leader', replicas: 1, template: { metadata: { annotations: annotations({ 'debug': 'true', 'oras-cache': 'job' }) }, spec: { template: { spec: { containers: [] } } } } },
          { name: 'workers', replicas: 2, template: { spec: { template: { metadata: { annotations: annotations({ unpack: 'false' }) }, spec: { containers: [] } } } } },
        ],
      },
    };
    const pods = readPods({ uid: 'u', kind: 'JobSet', object: jobset });
    expect(pods.map((p) => [p.name, p.annotations, p.pointer, p.metadata.pointer, p.metadata.exists])).toEqual([
      ['js-leader', annotations({ 'oras-cache': 'jobset', 'debug': 'true' }), '/spec/replicatedJobs/0/template/spec/template/spec', '/spec/replicatedJobs/0/template/spec/template/metadata', false],
      ['js-workers', annotations({ 'oras-cache': 'jobset', 'unpack': 'false' }), '/spec/replicatedJobs/1/template/spec/template/spec', '/spec/replicatedJobs/1/template/spec/template/metadata', true],
    ]);
    expect(() => readPods({ uid: 'u', kind: 'JobSet', object: { spec: { replicatedJobs: {} } } })).toThrow(new MalformedObject('spec.replicatedJobs must be a list'));
  });
});

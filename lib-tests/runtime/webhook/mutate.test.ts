import { applyPatch } from 'fast-json-patch';
import { annotatedPod, DEFAULTS, reviewOf } from './local-webhook';
import { review } from '../../../runtime/webhook/mutate';

const cache = { 'oras-cache': 'c', 'output-uri': 'x/y:1' };

function answer(object: unknown, uid: unknown = 'u-1') {
  const result = review(reviewOf(object, uid), DEFAULTS);
  return { ...result, response: (result.body as any).response };
}

function prepare(object: any) {
  const { response } = answer(object);
  expect(response.patchType).toBe('JSONPatch');
  return applyPatch(JSON.parse(JSON.stringify(object)), JSON.parse(Buffer.from(response.patch, 'base64').toString())).newDocument;
}

describe('the admission handler', () => {
  test.each([
    ['an input-timeout beyond the digits a duration can take', { ...cache, 'input-timeout': '1e21' },
      /input-timeout must be a whole number of seconds written in digits, such as "1800", not "1e21"/],
    ['an input-timeout of more than a year', { ...cache, 'input-timeout': '999999999999999' },
      /oras\.converged-computing\.github\.io\/input-timeout: the input timeout of 999999999999999 seconds must be a whole number of seconds from 1 to 31536000/],
    ['plain-http with insecure', { 'registry': 'r.example.com', 'output-uri': 'x/y:1', 'plain-http': 'true', 'insecure': 'true' },
      /plain-http and oras\.converged-computing\.github\.io\/insecure exclude each other: remove insecure for a registry without TLS, or plain-http/],
    ['an input-path that resolves into /oras', { 'oras-cache': 'c', 'input-uri': 'a/b:1', 'input-path': '/a/../oras' },
      /input-path: the input path "\/a\/\.\.\/oras" \(that is "\/oras"\) is reserved .*pick another path/],
    ['an output-path that resolves into /oras', { ...cache, 'output-path': '/work/./../oras/x' }, /output-path: the output path .*\(that is "\/oras\/x"\) is reserved/],
    ['an output-pipe on the wrapper\'s FIFO', { ...cache, 'output-pipe': '/oras/state/stdout.fifo' },
      /output-pipe: the stdout file "\/oras\/state\/stdout\.fifo" is inside \/oras, .*write stdout to a file name in the output directory/],
    ['an output-pipe on the exit code', { ...cache, 'output-pipe': '/oras//state/exit-code' }, /output-pipe: the stdout file "\/oras\/\/state\/exit-code" \(that is "\/oras\/state\/exit-code"\) is inside \/oras/],
  ])('denies %s, naming the annotation and the fix', (_name, values, message) => {
    const { status, outcome, response } = answer(annotatedPod(values));
    expect([status, outcome]).toEqual([200, 'denied']);
    expect(response).toMatchObject({ uid: 'u-1', allowed: false, status: { code: 400, reason: 'BadRequest' } });
    expect(response.status.message).toMatch(/^cdk8s-oras: /);
    expect(response.status.message).toMatch(message);
  });

  test('an oras-cache with insecure speaks HTTPS: insecure alone is no conflict', () => {
    const patched = prepare(annotatedPod({ ...cache, 'insecure': 'true', 'input-uri': 'a/b:1', 'input-path': '/in' }));
    expect(patched.spec.containers[0].name).toBe('oras-pull');
    expect(patched.spec.containers[0].args).toEqual(expect.arrayContaining(['--insecure-host', 'c:5000']));
    expect(patched.spec.containers[0].args).not.toContain('--plain-http-host');
  });

  test.each([
    ['a user init container named oras-pull', { initContainers: [{ name: 'oras-pull', image: 'busybox:1', command: ['true'] }] }, /container name "oras-pull" is reserved for cdk8s-oras; rename that container/],
    ['a user container named oras-pull', { containers: [{ name: 'app', command: ['x'], workingDir: '/w' }, { name: 'oras-pull', command: ['y'] }] }, /container name "oras-pull" is reserved/],
    ['a user container named oras-push', { containers: [{ name: 'app', command: ['x'], workingDir: '/w' }, { name: 'oras-push', command: ['y'] }] }, /container name "oras-push" is reserved/],
    ['a user volume named oras-runtime', { volumes: [{ name: 'oras-runtime', emptyDir: {} }] }, /volume name "oras-runtime" uses the prefix "oras-", which cdk8s-oras reserves; rename it/],
    ['an oras-pull container with our arguments but no wrapped command',
      {
        containers: [
          { name: 'oras-pull', args: ['step', 'pull', '--state', '/oras/state', '--timeout', '60s'], volumeMounts: [{ name: 'oras-runtime', mountPath: '/oras/state' }] },
          { name: 'app', command: ['x'], workingDir: '/w' },
        ],
        volumes: [{ name: 'oras-runtime', emptyDir: {} }],
      }, /container name "oras-pull" is reserved/],
  ])('denies %s that is not our prepared pod', (_name, spec, message) => {
    const values = { ...cache, container: 'app' };
    const { response } = answer(annotatedPod(values, spec));
    expect(response.allowed).toBe(false);
    expect(response.status.message).toMatch(message);
  });

  test('a prepared pod passes unchanged, also after other webhooks added an init container and env', () => {
    const prepared = prepare(annotatedPod({ ...cache, 'input-uri': 'a/b:1', 'input-path': '/in' }));
    expect(answer(prepared).response).toEqual({ uid: 'u-1', allowed: true });
    const spec = prepared.spec;
    spec.initContainers = [{ name: 'istio-init', image: 'istio/proxyv2:1', command: ['x'] }];
    spec.containers.forEach((c: any) => { c.env = [...(c.env ?? []), { name: 'INJECTED', value: '1' }]; });
    spec.containers[0].image = 'mirror.example.com/oras-runtime:9.9.9';
    expect(answer(prepared).response).toEqual({ uid: 'u-1', allowed: true });
  });

  test('a pod an earlier version prepared (an init container installed the wrapper) passes unchanged', () => {
    const legacy = annotatedPod(cache, {
      initContainers: [{
        name: 'oras-pull',
        image: 'ghcr.io/cdk8s-oras/oras-runtime:0.1.0',
        args: ['step', 'pull', '--state', '/oras/state', '--wrapper', '/oras/bin/oras-wrap'],
        volumeMounts: [{ name: 'oras-runtime', mountPath: '/oras' }],
      }],
      containers: [{ name: 'app', image: 'busybox:1', command: ['/bin/sh', '/oras/bin/oras-wrap', '--state', '/oras/state', '--', 'true'], volumeMounts: [{ name: 'oras-runtime', mountPath: '/oras' }] }],
      volumes: [{ name: 'oras-runtime', emptyDir: {} }],
    });
    expect(answer(legacy).response).toEqual({ uid: 'u-1', allowed: true });
  });

  test('kubectl\'s default container becomes the app (oras-pull comes first), unless the pod names one', () => {
    const values = { ...cache, 'input-uri': 'a/b:1', 'input-path': '/in' };
    const pod = annotatedPod(values);
    const prepared = prepare(pod);
    expect(prepared.spec.containers.map((c: any) => c.name)).toEqual(['oras-pull', pod.spec.containers[0].name, 'oras-push']);
    expect(prepared.metadata.annotations['kubectl.kubernetes.io/default-container']).toBe(pod.spec.containers[0].name);
    const named = annotatedPod(values);
    (named.metadata.annotations as any)['kubectl.kubernetes.io/default-container'] = 'sidecar';
    expect(prepare(named).metadata.annotations['kubectl.kubernetes.io/default-container']).toBe('sidecar');

    const template = { spec: { restartPolicy: 'Never', containers: [{ name: 'app', image: 'busybox:1', command: ['true'], workingDir: '/w' }] } };
    const job = (metadata?: object) => ({
      apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j', annotations: pod.metadata.annotations }, spec: { template: { ...template, ...(metadata ? { metadata } : {}) } },
    });
    expect(prepare(job()).spec.template.metadata).toEqual({ annotations: { 'kubectl.kubernetes.io/default-container': 'app' } });
    expect(prepare(job({ labels: { a: 'b' } })).spec.template.metadata).toEqual({ labels: { a: 'b' }, annotations: { 'kubectl.kubernetes.io/default-container': 'app' } });
    expect(prepare(job({ annotations: { x: 'y' } })).spec.template.metadata.annotations).toEqual({ 'x': 'y', 'kubectl.kubernetes.io/default-container': 'app' });
  });

  test.each([
    ['an object uid', { a: 1 }],
    ['a number uid', 7],
    ['an empty uid', ''],
  ])('a review with %s is malformed: 400, not "[object Object]"', (_name, uid) => {
    const result = review(reviewOf(annotatedPod(cache), uid), DEFAULTS);
    expect(result).toEqual({ status: 400, outcome: 'malformed', body: { error: 'the AdmissionReview request needs a uid that is a non-empty string' } });
  });

  test.each([
    ['initContainers that are not a list', { initContainers: 'oras-pull' }, 'spec.initContainers must be a list'],
    ['containers that are not a list', { containers: { name: 'app' } }, 'spec.containers must be a list'],
    ['a container that is not an object', { containers: [7] }, 'spec.containers[0] must be an object'],
    ['a command that is not a list of strings', { containers: [{ name: 'app', command: ['sh', 1] }] }, 'spec.containers[0].command[1] must be a string'],
    ['env entries without names', { containers: [{ name: 'app', command: ['sh'], env: [{ value: 'x' }] }] }, 'spec.containers[0].env[0].name must be a string'],
    ['volumes that are not a list', { volumes: 'x' }, 'spec.volumes must be a list'],
    ['a volume mount without a path', { containers: [{ name: 'app', command: ['sh'], volumeMounts: [{ name: 'v' }] }] }, 'spec.containers[0].volumeMounts[0].mountPath must be a string'],
  ])('a Pod with %s is denied with the field named, never a 500', (_name, spec, field) => {
    const { status, response } = answer(annotatedPod(cache, spec));
    expect(status).toBe(200);
    expect(response).toMatchObject({ uid: 'u-1', allowed: false, status: { code: 400 } });
    expect(response.status.message).toBe(`cdk8s-oras: this Pod cannot be read: ${field}; fix that field`);
  });

  test('wrong types in annotations and in a Job\'s template are named too', () => {
    const pod = annotatedPod(cache);
    (pod.metadata.annotations as any)['oras.converged-computing.github.io/debug'] = true;
    expect(answer(pod).response.status.message).toBe('cdk8s-oras: this Pod cannot be read: metadata.annotations["oras.converged-computing.github.io/debug"] must be a string; fix that field');
    const job = { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j', annotations: annotatedPod(cache).metadata.annotations }, spec: { template: { spec: [] } } };
    expect(answer(job).response.status.message).toBe('cdk8s-oras: this Job cannot be read: spec.template.spec must be an object; fix that field');
  });

  test('a wrongly typed spec of a pod without ORAS annotations is not read, so not judged', () => {
    expect(answer({ kind: 'Pod', metadata: { name: 'q' }, spec: { containers: 'x' } }).response).toEqual({ uid: 'u-1', allowed: true });
  });
});

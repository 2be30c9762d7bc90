import { Duration, Testing } from 'cdk8s';
import { Operation } from 'fast-json-patch';
import { annotatedPod, LocalWebhook, reviewOf } from './local-webhook';
import { PREFIX } from '../../../runtime/webhook/annotations';
import { OrasArtifact, OrasRegistry, OrasRuntimeImage, OrasWorkflow } from '../../../src';
import { injectOras, PROVENANCE } from '../../../src/injection';
import { WRAPPER_SCRIPT_IN_SPEC } from '../../../src/wrapper';
import { eventually } from '../../util/eventually';
import { expectValidKubernetes } from '../../util/kubernetes-schema';
import { describeWithPeers } from '../../util/peers';
import { RunningWebhook, WEBHOOK_RUNTIME_IMAGE as RUNTIME_IMAGE } from '../../util/webhook';

describeWithPeers(['openssl'], 'oras-runtime webhook over real HTTPS', () => {
  let webhook: RunningWebhook;
  beforeAll(async () => { webhook = await RunningWebhook.start(); });
  afterAll(async () => { await webhook.stop(); });

  const pod = (annotations: Record<string, string>, containers: any[] = [{ name: 'app', image: 'busybox:1.36.1', command: ['sh', '-c', 'date > /work/date.txt'], workingDir: '/work' }]) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', annotations: Object.fromEntries(Object.entries(annotations).map(([k, v]) => [PREFIX + k, v])) },
    spec: { containers },
  });

  test('an annotated Pod is prepared; the patched Pod validates against the Kubernetes schema', async () => {
    const { response, patched } = await webhook.admit('Pod', pod({ 'oras-cache': 'orascache', 'output-uri': 'dinosaur/date:one', 'output-path': '/work' }));
    expect(response.allowed).toBe(true);
    expect(response.patchType).toBe('JSONPatch');
    expectValidKubernetes([patched]);
    expect(patched.spec.initContainers).toBeUndefined();
    expect(patched.spec.containers.map((c: any) => c.name)).toEqual(['app', 'oras-push']);
    expect(patched.spec.containers[1].args).toEqual(expect.arrayContaining(['--to', 'orascache:5000/dinosaur/date:one', '--plain-http-host', 'orascache:5000']));
    expect(patched.spec.containers[1].image).toBe(RUNTIME_IMAGE);
  });

  test('the webhook and the synth-time path give the same pod for the same settings', async () => {
    const chart = Testing.chart();
    const registry = OrasRegistry.fromHost('cache.example.com:5000', { plainHttp: true });
    const workflow = new OrasWorkflow(chart, 'Wf', { name: 'wf', registry, runId: 'r1', runtimeImage: OrasRuntimeImage.fromImage(RUNTIME_IMAGE), inputTimeout: Duration.minutes(3) });
    const step = workflow.addStep('s', {
      image: 'busybox:1.36.1',
      command: ['sh', '-c', 'cp /in/x /out/y'],
      inputs: [{ artifact: OrasArtifact.fromReference('cache.example.com:5000/data/x:v1'), path: '/in', external: true }],
      output: { path: '/out', repository: 'data/y', tag: 'v2' },
      outputPipe: 'log.txt',
    });
    const template = Testing.synth(chart).find((m) => m.kind === 'Job').spec.template;
    const synthesized = template.spec;
    const { patched } = await webhook.admit('Pod', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: step.name,
        annotations: Object.fromEntries(Object.entries({
          'registry': 'cache.example.com:5000',
          'plain-http': 'true',
          'input-uri': 'data/x:v1',
          'input-path': '/in',
          'output-uri': step.output.reference,
          'output-path': '/out',
          'output-pipe': 'log.txt',
          'container': 'main',
          'oras-container': RUNTIME_IMAGE,
          'input-timeout': '180',
        }).map(([k, v]) => [PREFIX + k, v])),
      },
      spec: step._basePodSpec(),
    });
    // The same function with the same settings, but for what only typed steps have: volumes (annotated pods copy),
    // the runtime's static shell (annotated pods use the image's), memoization and the workflow's provenance.
    const settings = step._injectionSettings();
    expect(synthesized).toEqual(injectOras(step._basePodSpec(), settings));
    expect(patched.spec).toEqual(injectOras(step._basePodSpec(), {
      ...settings, placement: 'copy', shell: 'image', memoKey: undefined, output: { ...settings.output!, annotations: { [PROVENANCE.STEP]: step.name, [PROVENANCE.IMAGE]: 'busybox:1.36.1' } },
    }));
    expect(synthesized.containers.map((c: any) => c.name)).toEqual(['oras-pull', 'main', 'oras-push']);
    expect(patched.spec.containers.map((c: any) => c.name)).toEqual(['oras-pull', 'main', 'oras-push']);
    expect(patched.metadata.annotations['kubectl.kubernetes.io/default-container']).toBe(template.metadata.annotations['kubectl.kubernetes.io/default-container']);
  });

  test('a Job\'s annotations apply to its pod template, with output-pipe', async () => {
    const job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'j', annotations: { [`${PREFIX}oras-cache`]: 'orascache', [`${PREFIX}output-uri`]: 'x/y:z', [`${PREFIX}output-pipe`]: 'stdout.txt' } },
      spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'app', image: 'busybox:1.36.1', command: ['echo', 'hi'], workingDir: '/data' }] } } },
    };
    const { response, patched, patch } = await webhook.admit('Job', job);
    expect(response.allowed).toBe(true);
    expect(patch.every((op: Operation) => op.path.startsWith('/spec/template/'))).toBe(true);
    expectValidKubernetes([patched]);
    expect(patched.spec.template.spec.containers[0].command)
      .toEqual(['/bin/sh', '-c', WRAPPER_SCRIPT_IN_SPEC, 'oras-wrap', '--state', '/oras/state', '--stdout', 'stdout.txt', '--copy-out', '.=/oras/output/app', '--', 'echo', 'hi']);
  });

  test('what the prototype accepted comes back as warnings with an admitted pod', async () => {
    const { response, patched } = await webhook.admit('Pod', pod({ 'oras-cache': 'c', 'output-uri': 'x/y:1', 'entrypoint': 'https://example.com/e.sh' },
      [{ name: 'a', command: ['x'] }, { name: 'b', command: ['y'] }]));
    expect(response.allowed).toBe(true);
    expect(response.warnings).toEqual([
      expect.stringMatching(/^cdk8s-oras: oras\.converged-computing\.github\.io\/entrypoint is ignored/),
      expect.stringMatching(/^cdk8s-oras: the pod has 2 containers \("a", "b"\) and no .*: "a", the first, runs the command/),
    ]);
    expect(patched.spec.containers.map((c: any) => c.name)).toEqual(['a', 'b', 'oras-push']);
  });

  test('idempotent: a prepared object and an object without ORAS annotations pass unchanged', async () => {
    const first = await webhook.admit('Pod', pod({ 'oras-cache': 'c', 'output-uri': 'x/y:1' }));
    const again = await webhook.admit('Pod', first.patched);
    expect(again.response).toEqual({ uid: 'u-1', allowed: true });
    const plain = await webhook.admit('Pod', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'q' }, spec: { containers: [{ name: 'a', image: 'x:1' }] } });
    expect(plain.response).toEqual({ uid: 'u-1', allowed: true });
  });

  test.each([
    ['a missing command', pod({ 'oras-cache': 'c', 'output-uri': 'x/y:1' }, [{ name: 'app', image: 'x:1', workingDir: '/w' }]), /container "app" has no command.*set command \(and args\) explicitly/],
    ['an invalid URI', pod({ 'oras-cache': 'c', 'output-uri': 'Bad:ref:x' }), /output-uri: Invalid artifact reference/],
  ])('denies %s with a message that says how to fix it', async (_name, object, message) => {
    const { response } = await webhook.admit('Pod', object);
    expect(response.allowed).toBe(false);
    expect(response.status.code).toBe(400);
    expect(response.status.message).toMatch(/^cdk8s-oras: /);
    expect(response.status.message).toMatch(message);
  });

  test('malformed requests get 400 and the server keeps serving', async () => {
    expect((await webhook.post('{ not json')).status).toBe(400);
    expect((await webhook.post({ kind: 'Something' })).status).toBe(400);
    expect((await webhook.post({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'x', kind: { kind: 'Service' }, object: {} } })).body.error)
      .toBe('this webhook admits Pods, Jobs and JobSets, not "Service"');
    expect((await webhook.get('/healthz')).status).toBe(200);
  });

  test('health, readiness and Prometheus metrics', async () => {
    expect((await webhook.get('/healthz')).body.toString()).toBe('ok');
    expect((await webhook.get('/readyz')).status).toBe(200);
    const metrics = (await webhook.get('/metrics')).body.toString();
    expect(metrics).toMatch(/^oras_webhook_requests_total\{outcome="patched"\} \d+$/m);
    expect(metrics).toMatch(/^oras_webhook_requests_total\{outcome="malformed"\} \d+$/m);
    expect(metrics).toMatch(/^oras_webhook_request_duration_seconds_count \d+$/m);
  });

  test('SIGTERM shuts down cleanly', async () => {
    const other = await RunningWebhook.start();
    expect(await other.stop()).toBe(0);
    expect(other.log).toContain('"event":"stopping"');
  });
});

describe('webhook server protocol (in process)', () => {
  let webhook: LocalWebhook;
  beforeAll(async () => { webhook = await LocalWebhook.start(); });
  afterAll(async () => { await webhook.stop(); });

  const post = (text: string) => `POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n`;

  test('a body over 3 MiB is read to its end and answered 413 with the limit, then the connection closes', async () => {
    const body = Buffer.alloc(3 * 1024 * 1024 + 1, 0x20);
    const response = await webhook.post(body);
    expect(response.status).toBe(413);
    expect(JSON.parse(response.body.toString()).error).toMatch(/more than 3145728 bytes \(3 MiB\).*send a smaller AdmissionReview/);
    expect(response.headers.connection).toBe('close');
    expect((await webhook.get('/healthz')).status).toBe(200);
  });

  test('a body that is not JSON gets 400 and says what to send', async () => {
    const response = await webhook.post('{ not json');
    expect(response.status).toBe(400);
    expect(JSON.parse(response.body.toString()).error).toBe('the request body is not JSON; send an admission.k8s.io/v1 AdmissionReview');
  });

  test('an aborted slow request counts as "aborted", not as malformed, and stays out of the latency histogram', async () => {
    const [aborted, malformed, timed] = [await webhook.count('aborted'), await webhook.count('malformed'), await webhook.timed()];
    const text = JSON.stringify(reviewOf(annotatedPod({ 'oras-cache': 'c' })));
    const { error } = await webhook.raw([post(text), text.slice(0, 20), text.slice(20, 40)], { pauseMs: 100, abort: true });
    expect(error).toBeUndefined();
    expect(await eventually(() => webhook.count('aborted'), aborted + 1)).toBe(aborted + 1);
    expect(await webhook.count('malformed')).toBe(malformed);
    expect(await webhook.timed()).toBe(timed);
    expect(webhook.events.some((e) => e.name === 'aborted')).toBe(true);
  });

  test('a slow request that completes gets its answer', async () => {
    const text = JSON.stringify(reviewOf(annotatedPod({ 'oras-cache': 'c', 'output-uri': 'x/y:1' })));
    const { answer } = await webhook.raw([post(text), text.slice(0, 100), text.slice(100), ''], { pauseMs: 50 });
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(answer).toContain('"patchType":"JSONPatch"');
  });
});

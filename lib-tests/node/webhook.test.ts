import { randomBytes } from 'crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { parseAllDocuments } from 'yaml';
import { PREFIX } from '../../runtime/webhook/annotations';
import { OrasRegistry } from '../../src';
import { WRAPPER_SCRIPT_IN_SPEC } from '../../src/wrapper';
import { HUB_STAND_INS, NODE_IMAGES, WORKDIR_FILE } from '../util/images';
import { KubeCluster, orasPushFile } from '../util/kube-node';
import { describeOnNode, loginSecrets, useNamespace } from '../util/node';
import { requirePeer, run } from '../util/peers';

const root = join(__dirname, '..', '..');
const bundle = join(root, 'dist', 'oras-webhook.yaml');
const OPT_IN = 'oras.converged-computing.github.io/webhook';

describeOnNode('the admission webhook on a Kubernetes node (dist/oras-webhook.yaml)', (cluster: KubeCluster) => {
  const namespace = useNamespace(cluster, 'annotated', { [OPT_IN]: 'enabled' });
  let address = '';

  const annotations = (values: Record<string, string>) => Object.fromEntries(Object.entries({ 'oras-cache': 'oras', ...values }).map(([k, v]) => [PREFIX + k, v]));
  const annotatedPod = (name: string, values: Record<string, string>, command: string[]) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: namespace.name, annotations: annotations(values) },
    spec: { restartPolicy: 'Never', containers: [{ name: 'app', image: NODE_IMAGES.busybox, command, workingDir: '/data' }] },
  });

  /** Waits until the pod has finished; returns its phase. */
  const podPhase = (name: string) => cluster.until(`pod ${name} to finish`, 120_000, () => {
    const phase = cluster.getJson(['get', 'pod', '-n', namespace.name, name]).status.phase;
    return ['Succeeded', 'Failed'].includes(phase) ? phase : undefined;
  }).catch((err) => { throw new Error(`${err.message}\n${cluster.describe(namespace.name)}`); });

  /** What the oras CLI pulls from the test registry: each file's path and content. */
  function pulledFiles(reference: string): Record<string, string> {
    const dir = mkdtempSync(join(tmpdir(), 'oras-node-'));
    try {
      const pulled = run(requirePeer('oras'), ['pull', '--plain-http', `${address}/${reference}`, '-o', dir]);
      if (pulled.status !== 0) throw new Error(`oras pull ${reference}: ${pulled.output}`);
      const files = (readdirSync(dir, { recursive: true }) as string[]).filter((f) => statSync(join(dir, f)).isFile()).sort();
      return Object.fromEntries(files.map((f) => [f, readFileSync(join(dir, f), 'utf8')]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const contentOf = (reference: string, file: string) => pulledFiles(reference)[file];

  beforeAll(async () => {
    cluster.kubectlOk(['apply', '-f', bundle]);
    address = await cluster.deployRegistry(namespace.name, 180);
    cluster.kubectlOk(['rollout', 'status', '-n', 'oras-system', 'deployment/oras-webhook', '--timeout=180s'], { timeoutMs: 190_000 });
    // The API server calls it through the Service: wait until kube-proxy routes it.
    await cluster.serviceAddress('oras-system', 'oras-webhook', 443);
  });

  afterAll(() => {
    cluster.kubectl(['delete', '-f', bundle, '--wait=true', '--timeout=120s']);
  });

  test('self-managed TLS: the CA is in the configuration and the API server trusts the Service', () => {
    const config = cluster.getJson(['get', 'mutatingwebhookconfiguration', 'oras-webhook']);
    const caBundle = Buffer.from(config.webhooks[0].clientConfig.caBundle, 'base64').toString();
    expect(caBundle).toContain('BEGIN CERTIFICATE');
    const secret = cluster.getJson(['get', 'secret', '-n', 'oras-system', 'oras-webhook-tls']);
    expect(Object.keys(secret.data)).toEqual(expect.arrayContaining(['tls.crt', 'tls.key']));
  });

  test('an annotated Pod runs and pushes its output to the oras-cache registry', async () => {
    const tag = `t${Date.now().toString(36)}`;
    const pod = annotatedPod('hello', { 'output-uri': `dinosaur/hello-world:${tag}` },
      ['sh', '-c', 'echo "hello from the operator example" > /data/hello.txt']);
    const created = cluster.apply({ objects: [pod] });
    expect(created).toContain('pod/hello created');
    const stored = cluster.getJson(['get', 'pod', '-n', namespace.name, 'hello']);
    expect(stored.spec.containers.map((c: any) => c.name)).toEqual(['app', 'oras-push']);
    expect(stored.spec.containers[0].command.slice(0, 4)).toEqual(['/bin/sh', '-c', WRAPPER_SCRIPT_IN_SPEC, 'oras-wrap']);
    expect(await podPhase('hello')).toBe('Succeeded');
    expect(contentOf(`dinosaur/hello-world:${tag}`, 'hello.txt')).toBe('hello from the operator example\n');
  });

  test('an annotated Job (annotations on the Job) reads an input and pipes its output', async () => {
    const tag = `t${Date.now().toString(36)}`;
    cluster.apply({ objects: [annotatedPod('producer', { 'output-uri': `dinosaur/input:${tag}` }, ['sh', '-c', 'echo first > /data/one.txt'])] });
    cluster.apply({
      objects: [{
        apiVersion: 'batch/v1',
        kind: 'Job',
        metadata: {
          name: 'piped',
          namespace: namespace.name,
          annotations: annotations({ 'input-uri': `dinosaur/input:${tag}`, 'input-path': '/inputs', 'output-uri': `dinosaur/piped:${tag}`, 'output-pipe': 'stdout.txt' }),
        },
        spec: {
          backoffLimit: 0,
          template: { spec: { restartPolicy: 'Never', containers: [{ name: 'app', image: NODE_IMAGES.busybox, command: ['cat', '/inputs/one.txt'], workingDir: '/data' }] } },
        },
      }],
    });
    expect(await cluster.jobOutcomes(namespace.name, ['piped'], 120_000)).toEqual({ piped: 'Complete' });
    expect(cluster.kubectlOk(['logs', '-n', namespace.name, 'job/piped', '-c', 'app'])).toBe('first\n');
    expect(contentOf(`dinosaur/piped:${tag}`, 'stdout.txt')).toBe('first\n');
  });

  test('two pods produce :one and :two; a third, created first, reads input-uri_1 and input-uri_2', async () => {
    const repo = `dinosaur/pair${Date.now().toString(36)}`;
    cluster.apply({
      objects: [
        annotatedPod('reader', { 'input-uri_1': `${repo}:one`, 'input-uri_2': `${repo}:two`, 'input-path': '/inputs', 'output-uri': `${repo}:both` },
          ['sh', '-c', 'cat /inputs/one.txt /inputs/two.txt | tee /data/both.txt']),
        annotatedPod('one', { 'output-uri': `${repo}:one` }, ['sh', '-c', 'echo first > /data/one.txt']),
        annotatedPod('two', { 'output-uri': `${repo}:two` }, ['sh', '-c', 'echo second > /data/two.txt']),
      ],
    });
    expect(await Promise.all(['reader', 'one', 'two'].map(podPhase))).toEqual(['Succeeded', 'Succeeded', 'Succeeded']);
    expect(cluster.kubectlOk(['logs', '-n', namespace.name, 'reader', '-c', 'app'])).toBe('first\nsecond\n');
    // oras-pull comes first in the pod, but kubectl picks the app container.
    expect(cluster.kubectlOk(['logs', '-n', namespace.name, 'reader'])).toBe('first\nsecond\n');
    expect(contentOf(`${repo}:both`, 'both.txt')).toBe('first\nsecond\n');
  });

  test('with one replica deleted, admission keeps working', async () => {
    const replicas = cluster.getJson(['get', 'pods', '-n', 'oras-system', '-l', 'app.kubernetes.io/name=oras-webhook']).items;
    expect(replicas).toHaveLength(2);
    cluster.kubectlOk(['delete', 'pod', '-n', 'oras-system', replicas[0].metadata.name, '--wait=false']);
    // Pods created while that replica terminates and its successor starts: every one must be prepared.
    for (let i = 0; i < 10; i++) {
      const name = `during-${i}`;
      cluster.apply({ objects: [annotatedPod(name, { 'output-uri': `dinosaur/during:${i}` }, ['true'])] });
      const pod = cluster.getJson(['get', 'pod', '-n', namespace.name, name]);
      expect({ name, prepared: pod.spec.containers.some((c: any) => c.name === 'oras-push') }).toEqual({ name, prepared: true });
      await new Promise((r) => setTimeout(r, 500));
    }
    cluster.kubectlOk(['rollout', 'status', '-n', 'oras-system', 'deployment/oras-webhook', '--timeout=120s'], { timeoutMs: 130_000 });
    expect(cluster.getJson(['get', 'pods', '-n', 'oras-system', '-l', 'app.kubernetes.io/name=oras-webhook']).items
      .filter((p: any) => p.status.phase === 'Running')).toHaveLength(2);
  });

  describe("the prototype's documented examples, applied unchanged", () => {
    const examples = join(__dirname, 'fixtures', 'oras-operator');
    beforeAll(() => {
      // The examples name the registry "orascache-sample": a second Service for the same registry pods.
      const selector = cluster.getJson(['get', 'service', '-n', namespace.name, 'oras']).spec.selector;
      cluster.apply({ namespace: namespace.name, objects: [{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'orascache-sample' }, spec: { selector, ports: [{ port: 5000, targetPort: 5000 }] } }] });
    });

    test('pods-1.yaml: two pods touch a file in the working dir; the oras CLI pulls exactly that file', async () => {
      expect(cluster.kubectlOk(['apply', '-n', namespace.name, '-f', join(examples, 'pods-1.yaml')])).toBe('pod/hello-world-1 created\npod/hello-world-2 created\n');
      expect(await Promise.all(['hello-world-1', 'hello-world-2'].map(podPhase))).toEqual(['Succeeded', 'Succeeded']);
      expect(pulledFiles('dinosaur/hello-world:one')).toEqual({ 'hello-world-1.txt': '' });
      expect(pulledFiles('dinosaur/hello-world:two')).toEqual({ 'hello-world-2.txt': '' });
      // The image the pods name verbatim, from the stand-in of Docker Hub.
      const pod = cluster.getJson(['get', 'pod', '-n', namespace.name, 'hello-world-1']);
      expect(pod.spec.containers.find((c: any) => c.name === 'my-container').image).toBe('ubuntu');
    });

    test('pod-2.yaml: both inputs land in the working dir (/ in ubuntu), as the prototype\'s last release copied them', async () => {
      expect(cluster.kubectlOk(['apply', '-n', namespace.name, '-f', join(examples, 'pod-2.yaml')])).toBe('pod/hello-world-3 created\n');
      // Its `ls inputs` dates from when the prototype copied an inputs/ directory (before its commit 1ea8a55);
      // since then inputs go into the working dir itself, as DESIGN.md says, so there is no inputs/ to list.
      expect(await podPhase('hello-world-3')).toBe('Failed');
      expect(cluster.kubectlOk(['logs', '-n', namespace.name, 'hello-world-3', '-c', 'my-container'])).toMatch(/^ls: inputs: No such file or directory\n$/);
      // The same pod listing its working dir shows both inputs next to what the image keeps there.
      const listing = parseAllDocuments(readFileSync(join(examples, 'pod-2.yaml'), 'utf8'))[0].toJSON();
      listing.metadata.name = 'hello-world-3-ls';
      listing.spec.containers[0].command = ['ls'];
      cluster.apply({ namespace: namespace.name, objects: [listing] });
      expect(await podPhase('hello-world-3-ls')).toBe('Succeeded');
      const files = cluster.kubectlOk(['logs', '-n', namespace.name, 'hello-world-3-ls']).split('\n');
      expect(files).toEqual(expect.arrayContaining(['bin', 'hello-world-1.txt', 'hello-world-2.txt']));
    });

    test('job.yaml: the breakfast Job pipes stdout to pancakes.txt, and pancakes.txt is what is pushed', async () => {
      expect(cluster.kubectlOk(['apply', '-n', namespace.name, '-f', join(examples, 'job.yaml')])).toBe('job.batch/breakfast created\n');
      expect(await cluster.jobOutcomes(namespace.name, ['breakfast'], 120_000)).toEqual({ breakfast: 'Complete' });
      expect(pulledFiles('dinosaur/hello-world:pancakes')).toEqual({ 'pancakes.txt': 'blueberry\n' });
      expect(cluster.kubectlOk(['logs', '-n', namespace.name, 'job/breakfast'])).toBe('blueberry\n');
    });
  });

  test('what the image keeps in its WORKDIR stays visible next to the pulled inputs; a relative output-path', async () => {
    const tag = `w${Date.now().toString(36)}`;
    orasPushFile(`${address}/dinosaur/workdir-in:${tag}`, 'input.txt', 'pulled\n');
    const image = `docker.io/${HUB_STAND_INS.workdir}`;
    cluster.apply({
      objects: [{
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'workdir', namespace: namespace.name, annotations: annotations({ 'input-uri': `dinosaur/workdir-in:${tag}`, 'output-uri': `dinosaur/workdir-out:${tag}`, 'output-path': 'results' }) },
        // No workingDir: the image's WORKDIR (/app) is where relative paths resolve.
        spec: { containers: [{ name: 'app', image, command: ['sh', '-c', 'mkdir results && cat kept-by-the-image.txt input.txt > results/both.txt && pwd'] }] },
      }],
    });
    expect(await podPhase('workdir')).toBe('Succeeded');
    expect(cluster.kubectlOk(['logs', '-n', namespace.name, 'workdir'])).toBe('/app\n');
    expect(pulledFiles(`dinosaur/workdir-out:${tag}`)).toEqual({ 'results/both.txt': `${WORKDIR_FILE.content}pulled\n` });
  });

  test('warnings, not denials: kubectl prints each one, and the pod runs', async () => {
    const tag = `x${Date.now().toString(36)}`;
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'warned',
        namespace: namespace.name,
        annotations: annotations({
          'output-uri': `dinosaur/warned:${tag}`,
          'output-path': 'out.txt',
          'entrypoint': 'https://example.invalid/entrypoint.sh',
          'oras-entrypoint': 'https://example.invalid/oras-entrypoint.sh',
          'oras-container': 'ghcr.io/oras-project/oras:v1.1.0',
        }),
      },
      spec: {
        containers: [
          { name: 'main', image: NODE_IMAGES.busybox, command: ['sh', '-c', 'echo main > out.txt'], workingDir: '/work' },
          { name: 'helper', image: NODE_IMAGES.busybox, command: ['true'] },
        ],
      },
    };
    const applied = cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(pod) });
    expect(applied.status).toBe(0);
    const warnings = applied.output.split('\n').filter((line) => line.startsWith('Warning: '));
    expect(warnings).toEqual([
      expect.stringMatching(/^Warning: cdk8s-oras: oras\.converged-computing\.github\.io\/entrypoint is ignored: nothing is downloaded/),
      expect.stringMatching(/^Warning: cdk8s-oras: oras\.converged-computing\.github\.io\/oras-entrypoint is ignored/),
      expect.stringMatching(/^Warning: cdk8s-oras: the pod has 2 containers \("main", "helper"\) and no .*container: "main", the first, runs the command/),
      expect.stringMatching(/^Warning: cdk8s-oras: .*oras-container "ghcr\.io\/oras-project\/oras:v1\.1\.0" is the oras CLI, .*the runtime image .* is used instead/),
    ]);
    expect(await podPhase('warned')).toBe('Succeeded');
    expect(pulledFiles(`dinosaur/warned:${tag}`)).toEqual({ 'out.txt': 'main\n' });
  });

  test('several launcher containers: each gets the inputs; one artifact with both outputs, pushed after both succeed', async () => {
    const tag = `l${Date.now().toString(36)}`;
    orasPushFile(`${address}/dinosaur/launch-in:${tag}`, 'seed.txt', 'seed\n');
    const launcher = (name: string) => ({ name, image: NODE_IMAGES.busybox, command: ['sh', '-c', `mkdir -p results && cp seed.txt results/${name}.txt && echo ${name} >> results/${name}.txt`], workingDir: '/work' });
    const pod = (name: string, fail: boolean) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: namespace.name, annotations: annotations({ 'container': 'a,b', 'input-uri': `dinosaur/launch-in:${tag}`, 'output-uri': `dinosaur/${name}:${tag}`, 'output-path': 'results' }) },
      spec: { containers: [launcher('a'), fail ? { ...launcher('b'), command: ['sh', '-c', 'exit 7'] } : launcher('b')] },
    });
    cluster.apply({ objects: [pod('launchers', false), pod('launchers-fail', true)] });
    expect(await Promise.all([podPhase('launchers'), podPhase('launchers-fail')])).toEqual(['Succeeded', 'Failed']);
    expect(pulledFiles(`dinosaur/launchers:${tag}`)).toEqual({ 'results/a.txt': 'seed\na\n', 'results/b.txt': 'seed\nb\n' });
    const failed = cluster.getJson(['get', 'pod', '-n', namespace.name, 'launchers-fail']);
    expect(cluster.containerState(failed, 'b').terminated.exitCode).toBe(7);
    expect(cluster.containerState(failed, 'a').terminated.exitCode).toBe(0);
    expect(run(requirePeer('oras'), ['manifest', 'fetch', '--plain-http', `${address}/dinosaur/launchers-fail:${tag}`]).status).not.toBe(0);
  });

  test('docker-config: a registry with htpasswd takes the credentials of a dockerconfigjson Secret; without it, the push is refused', async () => {
    const user = 'pancake-chef';
    const password = randomBytes(12).toString('hex');
    // The host as the pods reach an oras-cache: <name>:5000.
    cluster.apply({ namespace: namespace.name, objects: loginSecrets({ htpasswd: 'auth-htpasswd', login: 'auth-login' }, 'oras-auth:5000', user, password) });
    const chart = Testing.chart();
    new OrasRegistry(chart, 'Auth', { name: 'oras-auth', htpasswd: { secret: kplus.Secret.fromSecretName(chart, 'H', 'auth-htpasswd') } });
    cluster.apply({ namespace: namespace.name, objects: Testing.synth(chart) });
    cluster.kubectlOk(['rollout', 'status', '-n', namespace.name, 'deployment/oras-auth', '--timeout=120s'], { timeoutMs: 130_000 });
    const authAddress = await cluster.serviceAddress(namespace.name, 'oras-auth', 5000);

    const tag = `a${Date.now().toString(36)}`;
    const pod = (name: string, extra: Record<string, string>) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: namespace.name, annotations: annotations({ 'oras-cache': 'oras-auth', 'output-uri': `private/${name}:${tag}`, 'output-path': 'out.txt', ...extra }) },
      spec: { containers: [{ name: 'app', image: NODE_IMAGES.busybox, workingDir: '/work', command: ['sh', '-c', 'echo secret recipe > out.txt'] }] },
    });
    cluster.apply({ objects: [pod('with-login', { 'docker-config': 'auth-login' }), pod('without-login', {})] });
    expect(await Promise.all([podPhase('with-login'), podPhase('without-login')])).toEqual(['Succeeded', 'Failed']);
    const prepared = cluster.getJson(['get', 'pod', '-n', namespace.name, 'with-login']);
    // The password is in the mounted Secret only: not in any argument or env value.
    expect(JSON.stringify(prepared.spec)).not.toContain(password);
    expect(cluster.kubectlOk(['logs', '-n', namespace.name, 'without-login', '-c', 'oras-push'])).toMatch(/401|unauthorized|UNAUTHORIZED/);

    const out = mkdtempSync(join(tmpdir(), 'oras-node-'));
    try {
      const pulled = run(requirePeer('oras'), ['pull', '--plain-http', '-u', user, '--password-stdin', `${authAddress}/private/with-login:${tag}`, '-o', out], { input: password });
      expect(pulled.status).toBe(0);
      expect(readFileSync(join(out, 'out.txt'), 'utf8')).toBe('secret recipe\n');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

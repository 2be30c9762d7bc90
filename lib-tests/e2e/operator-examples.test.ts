import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { pull } from '../../runtime/oci/pull';
import { parseReference } from '../../runtime/oci/reference';
import { PREFIX } from '../../runtime/webhook/annotations';
import { OrasRuntimeImage } from '../../src';
import { describeWithPeers } from '../util/peers';
import { BUSYBOX_IMAGE, buildBusyboxImage, buildRuntimeImage, podOfJob, PodResult, removePods, runPods } from '../util/pods';
import { useRegistry } from '../util/use-registry';
import { RunningWebhook } from '../util/webhook';

/**
 * The old oras-operator's documented examples: annotated Pods and a Job are
 * mutated by the running webhook, then run in podman against a real registry.
 * (`registry` stands in for `oras-cache`: podman has no cluster DNS.)
 */
describeWithPeers(['podman', 'busybox', 'docker-registry', 'openssl'], 'operator examples through the webhook, on podman', () => {
  const under = useRegistry();
  let webhook: RunningWebhook;
  const played: string[] = [];

  beforeAll(async () => {
    buildBusyboxImage();
    buildRuntimeImage();
    webhook = await RunningWebhook.start(OrasRuntimeImage.default().image);
  });
  afterAll(async () => {
    removePods(played);
    await webhook?.stop();
  });

  const annotations = (values: Record<string, string>) => Object.fromEntries(Object.entries({
    'registry': under.registry.host, 'plain-http': 'true', ...values,
  }).map(([k, v]) => [PREFIX + k, v]));

  const annotatedPod = (name: string, values: Record<string, string>, command: string[]) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, annotations: annotations(values) },
    spec: { restartPolicy: 'Never', containers: [{ name: 'app', image: BUSYBOX_IMAGE, command, workingDir: '/data' }] },
  });

  /** Admits each object through the webhook, then runs the prepared pods at once. */
  async function admitAndRun(objects: { kind: 'Pod' | 'Job'; object: any }[], suffix: string): Promise<Record<string, PodResult>> {
    const pods = [];
    for (const { kind, object } of objects) {
      const { response, patched } = await webhook.admit(kind, object);
      expect(response.allowed).toBe(true);
      pods.push(kind === 'Job' ? podOfJob(patched, suffix) : podOfJob({ metadata: patched.metadata, spec: { template: { spec: patched.spec } } }, suffix));
    }
    played.push(...pods.map((p) => p.metadata.name));
    const results = await runPods(pods, 120_000);
    return Object.fromEntries(results.map((r) => [r.name.slice(0, -(suffix.length + 1)), r]));
  }

  async function contentOf(reference: string, file: string): Promise<string> {
    const dir = mkdtempSync(join(tmpdir(), 'oras-op-'));
    try {
      await pull(under.client, parseReference(reference), dir);
      return readFileSync(join(dir, file), 'utf8');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  test('a Pod with output-uri and output-path pushes its file', async () => {
    const tag = `t${Date.now().toString(36)}`;
    const results = await admitAndRun([{
      kind: 'Pod',
      object: annotatedPod('hello', { 'output-uri': `dinosaur/hello-world:${tag}`, 'output-path': '/data' },
        ['sh', '-c', 'echo "hello from the operator example" > /data/hello.txt']),
    }], 'op1');
    expect(Object.values(results.hello.containers).map((c) => c.exitCode)).toEqual([0, 0]);
    expect(await contentOf(`${under.registry.host}/dinosaur/hello-world:${tag}`, 'hello.txt')).toBe('hello from the operator example\n');
  });

  test('a Job with Job-level annotations and output-pipe', async () => {
    const tag = `t${Date.now().toString(36)}`;
    const job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'piped', annotations: annotations({ 'output-uri': `dinosaur/piped:${tag}`, 'output-pipe': 'stdout.txt' }) },
      spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'app', image: BUSYBOX_IMAGE, command: ['sh', '-c', 'echo piped line'], workingDir: '/data' }] } } },
    };
    const results = await admitAndRun([{ kind: 'Job', object: job }], 'op2');
    expect(results.piped.containers.app.logs).toContain('piped line');
    expect(await contentOf(`${under.registry.host}/dinosaur/piped:${tag}`, 'stdout.txt')).toBe('piped line\n');
  });

  test('two pods produce :one and :two; a third reads input-uri_1 and input-uri_2', async () => {
    const repo = `dinosaur/pair${Date.now().toString(36)}`;
    const results = await admitAndRun([
      {
        kind: 'Pod',
        object: annotatedPod('reader', { 'input-uri_1': `${repo}:one`, 'input-uri_2': `${repo}:two`, 'input-path': '/inputs', 'output-uri': `${repo}:both`, 'output-path': '/data' },
          ['sh', '-c', 'cat /inputs/one.txt /inputs/two.txt | tee /data/both.txt']),
      },
      { kind: 'Pod', object: annotatedPod('one', { 'output-uri': `${repo}:one` }, ['sh', '-c', 'echo first > /data/one.txt']) },
      { kind: 'Pod', object: annotatedPod('two', { 'output-uri': `${repo}:two` }, ['sh', '-c', 'echo second > /data/two.txt']) },
    ], 'op3');
    expect(results.reader.containers.app.exitCode).toBe(0);
    expect(results.reader.containers.app.logs).toBe('first\nsecond\n');
    expect(await contentOf(`${under.registry.host}/${repo}:both`, 'both.txt')).toBe('first\nsecond\n');
  });
});

import { Chart, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { OrasArtifact, OrasRegistry, OrasWorkflow } from '../src';
import { expectValidKubernetes } from './util/kubernetes-schema';

const registry = OrasRegistry.fromHost('cache:5000', { plainHttp: true });
const image = 'busybox:1.36.1';

function workflow(runId = 'r1') {
  const app = Testing.app();
  const chart = new Chart(app, 'test');
  return { app, chart, wf: new OrasWorkflow(chart, 'Wf', { name: 'wf', registry, runId }) };
}

describe('OrasWorkflow', () => {
  test('runId prefixes every output tag; by default a new one per synth', () => {
    const a = new OrasWorkflow(Testing.chart(), 'A', { registry });
    const b = new OrasWorkflow(Testing.chart(), 'B', { registry });
    expect(a.runId).toMatch(/^r[0-9a-z]+$/);
    expect(a.runId).not.toBe(b.runId);
    const step = a.addStep('s', { image, command: ['true'], output: { path: '/o' } });
    expect(step.output.tag).toBe(`${a.runId}-output`);
  });

  test('refuses a bad runId or name', () => {
    expect(() => new OrasWorkflow(Testing.chart(), 'W', { registry, runId: '-x' })).toThrow(/runId "-x" must be 1 to 64 characters/);
    expect(() => new OrasWorkflow(Testing.chart(), 'W', { registry, name: 'Bad' })).toThrow(/name "Bad" must be a DNS label/);
  });

  test('a valid graph synthesizes, with its Mermaid graph in a ConfigMap', () => {
    const { app, chart, wf } = workflow();
    const a = wf.addStep('a', { image, command: ['true'], output: { path: '/out' } });
    const b = wf.addStep('b', { image, command: ['true'], output: { path: '/out' } });
    wf.addStep('c', { image, command: ['true'], inputs: [{ artifact: a.output, path: '/in/a' }, { artifact: b.output, path: '/in/b' }] });
    wf.addStep('d', { image, command: ['true'], inputs: [{ artifact: OrasArtifact.fromReference('ghcr.io/acme/data:v1'), path: '/in', external: true }] });
    expect(() => app.synth()).not.toThrow();
    const manifests = Testing.synth(chart);
    expectValidKubernetes(manifests);
    const graph = manifests.find((m) => m.kind === 'ConfigMap');
    expect(graph.metadata.name).toBe('wf-graph');
    expect(graph.data['workflow.mmd']).toBe([
      'flowchart LR',
      '  %% A step with inputs from other steps starts as a suspended Job (dashed border); the last of its producers',
      '  %% to push resumes it, and a producer that fails labels every Job downstream oras.land/blocked-by.',
      '  classDef suspended stroke-dasharray: 5 5',
      '  s0["wf-a"]',
      '  s1["wf-b"]',
      '  s2["wf-c"]',
      '  s3["wf-d"]',
      '  class s2 suspended',
      '  s0 -->|"wf/a:r1-output"| s2',
      '  s1 -->|"wf/b:r1-output"| s2',
      '  x3_0[("ghcr.io/acme/data:v1")] -.-> s3',
      '',
    ].join('\n'));
    expect(wf.steps.map((s) => s.name)).toEqual(['wf-a-r1', 'wf-b-r1', 'wf-c-r1', 'wf-d-r1']);
    expect(wf.steps.map((s) => s.stepName)).toEqual(['wf-a', 'wf-b', 'wf-c', 'wf-d']);
  });

  test('steps with inputs from other steps start suspended; their producers may resume them, and block everything downstream', () => {
    const { chart, wf } = workflow();
    const a = wf.addStep('a', { image, command: ['true'], output: { path: '/out' } });
    const b = wf.addStep('b', { image, command: ['true'], output: { path: '/out' }, inputs: [{ artifact: a.output, path: '/in' }] });
    const ext = wf.addStep('ext', { image, command: ['true'], output: { path: '/out' }, inputs: [{ artifact: OrasArtifact.fromReference('ghcr.io/acme/data:v1'), path: '/in', external: true }] });
    const mine = kplus.ServiceAccount.fromServiceAccountName(chart, 'Mine', 'my-account');
    wf.addStep('c', {
      image,
      command: ['true'],
      serviceAccount: mine,
      inputs: [{ artifact: a.output, path: '/a' }, { artifact: b.output, path: '/b' }, { artifact: ext.output, path: '/e' }],
    });
    const manifests = Testing.synth(chart);
    expectValidKubernetes(manifests);
    const job = (name: string) => manifests.find((m) => m.kind === 'Job' && m.metadata.name === name);
    const push = (name: string) => job(name).spec.template.spec.containers.find((c: any) => c.name === 'oras-push');

    // Only steps that read other steps' outputs wait, suspended; an external input keeps the waiting path.
    expect(['wf-a-r1', 'wf-b-r1', 'wf-ext-r1', 'wf-c-r1'].map((n) => job(n).spec.suspend)).toEqual([undefined, true, undefined, true]);
    expect(job('wf-c-r1').metadata.annotations).toEqual({ 'oras.land/waits-for': 'wf-a-r1,wf-b-r1,wf-ext-r1' });
    const resumes = (name: string) => push(name).args.filter((_: string, i: number, args: string[]) => args[i - 1] === '--resume');
    const blocks = (name: string) => push(name).args.filter((_: string, i: number, args: string[]) => args[i - 1] === '--block');
    const needs = 'cache:5000/wf/a:r1-output,cache:5000/wf/b:r1-output,cache:5000/wf/ext:r1-output';
    expect(resumes('wf-a-r1')).toEqual(['wf-b-r1=cache:5000/wf/a:r1-output', `wf-c-r1=${needs}`]);
    expect(blocks('wf-a-r1')).toEqual(['wf-b-r1', 'wf-c-r1']);
    expect(resumes('wf-ext-r1')).toEqual([`wf-c-r1=${needs}`]);

    // Only oras-push sees a token: a projected one, of the workflow's account (or the step's own).
    const a0 = job('wf-a-r1').spec.template.spec;
    expect(a0).toMatchObject({ serviceAccountName: 'wf-steps', automountServiceAccountToken: false });
    expect(push('wf-a-r1').volumeMounts).toContainEqual({ name: 'oras-kube-api', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true });
    for (const c of a0.containers.filter((x: any) => x.name !== 'oras-push')) expect(c.volumeMounts.some((m: any) => m.name === 'oras-kube-api')).toBe(false);
    expect(a0.volumes.find((v: any) => v.name === 'oras-kube-api').projected.sources[0]).toEqual({ serviceAccountToken: { path: 'token', expirationSeconds: 3607 } });
    expect(job('wf-c-r1').spec.template.spec.serviceAccountName).toBe('my-account');
    // A step with no dependents gets no token.
    expect(job('wf-c-r1').spec.template.spec.volumes.some((v: any) => v.name === 'oras-kube-api')).toBe(false);

    expect(manifests.find((m) => m.kind === 'Role').rules).toEqual([{ apiGroups: ['batch'], resources: ['jobs'], verbs: ['get', 'patch'] }]);
    expect(manifests.find((m) => m.kind === 'RoleBinding').subjects.map((s: any) => s.name)).toEqual(['wf-steps', 'my-account']);
    expect(manifests.find((m) => m.kind === 'ServiceAccount')).toMatchObject({ metadata: { name: 'wf-steps' }, automountServiceAccountToken: false });
  });

  test('suspendUntilInputsExist: false: every pod starts at once and waits; no account, no Role', () => {
    const app = Testing.app();
    const chart = new Chart(app, 'test');
    const wf = new OrasWorkflow(chart, 'Wf', { name: 'wf', registry, runId: 'r1', suspendUntilInputsExist: false });
    const a = wf.addStep('a', { image, command: ['true'], output: { path: '/out' } });
    wf.addStep('b', { image, command: ['true'], inputs: [{ artifact: a.output, path: '/in' }] });
    const manifests = Testing.synth(chart);
    expect(manifests.filter((m) => ['Role', 'RoleBinding', 'ServiceAccount'].includes(m.kind))).toEqual([]);
    for (const job of manifests.filter((m) => m.kind === 'Job')) {
      expect(job.spec.suspend).toBeUndefined();
      expect(job.spec.template.spec.serviceAccountName).toBeUndefined();
      expect(JSON.stringify(job)).not.toContain('--resume');
    }
  });

  test('an input no step produces names the step and the way out', () => {
    const { app, wf } = workflow();
    wf.addStep('reader', { image, command: ['true'], inputs: [{ artifact: registry.artifact('wf/ghost', 'r1-output'), path: '/in' }] });
    expect(() => app.synth()).toThrow(/step "wf-reader" reads cache:5000\/wf\/ghost:r1-output, which no step of this workflow produces\. .*external: true/);
  });

  test('an input of a previous run is caught: the tag carries the run id', () => {
    const { app, wf } = workflow('r2');
    wf.addStep('a', { image, command: ['true'], output: { path: '/out' } });
    wf.addStep('b', { image, command: ['true'], inputs: [{ artifact: registry.artifact('wf/a', 'r1-output'), path: '/in' }] });
    expect(() => app.synth()).toThrow(/step "wf-b" reads cache:5000\/wf\/a:r1-output, which no step of this workflow produces/);
  });

  test('a rerun applies next to the last run: new Job names and tags, the same graph ConfigMap', () => {
    const runOf = (runId: string) => {
      const { chart, wf } = workflow(runId);
      const prepare = wf.addStep('prepare', { image, command: ['true'], output: { path: '/out' } });
      wf.addStep('use', { image, command: ['true'], inputs: [{ artifact: prepare.output, path: '/in' }] });
      return Testing.synth(chart);
    };
    const [first, second] = [runOf('r1'), runOf('r2')];
    const jobs = (manifests: any[]) => manifests.filter((m) => m.kind === 'Job').map((m) => m.metadata.name);
    expect(jobs(first)).toEqual(['wf-prepare-r1', 'wf-use-r1']);
    expect(jobs(second)).toEqual(['wf-prepare-r2', 'wf-use-r2']);
    const configMaps = (manifests: any[]) => manifests.filter((m) => m.kind === 'ConfigMap').map((m) => m.metadata.name);
    expect(configMaps(second)).toEqual(configMaps(first));
    const use = second.find((m) => m.metadata.name === 'wf-use-r2').spec.template.spec.containers[0];
    expect(use.args).toEqual(expect.arrayContaining(['--input', 'cache:5000/wf/prepare:r2-output=/oras-inputs/0']));
  });

  test('two steps with one Job name are named, with the fix', () => {
    const { app, wf } = workflow();
    wf.addStep('one', { image, command: ['true'], name: 'shared' });
    wf.addStep('two', { image, command: ['true'], name: 'shared' });
    expect(() => app.synth()).toThrow(/steps "test\/Wf\/one" and "test\/Wf\/two" both get the Job name "shared-r1", so one Job would replace the other\. Give one of them another id or an explicit name/);
  });

  test('ids that differ only in case: the message says why they collide', () => {
    const { app, wf } = workflow();
    wf.addStep('Prepare', { image, command: ['true'] });
    wf.addStep('prepare', { image, command: ['true'] });
    expect(() => app.synth()).toThrow(/steps "test\/Wf\/Prepare" and "test\/Wf\/prepare" both get the Job name "wf-prepare-r1" \(their ids differ only in case, and Job names are lowercase\)/);
  });

  test('an input that another workflow produces names that workflow and its step', () => {
    const { app, chart, wf } = workflow();
    const other = new OrasWorkflow(chart, 'Other', { name: 'other', registry, runId: 'r1' });
    const made = other.addStep('make', { image, command: ['true'], output: { path: '/out' } });
    wf.addStep('use', { image, command: ['true'], inputs: [{ artifact: made.output, path: '/in' }] });
    expect(() => app.synth()).toThrow(/step "wf-use" reads cache:5000\/other\/make:r1-output, which step "other-make" of another workflow, "test\/Other", produces; a workflow orders only its own steps\. Move the two steps into one workflow, or mark the input external/);
  });

  test('two steps pushing the same artifact are named', () => {
    const { app, wf } = workflow();
    wf.addStep('one', { image, command: ['true'], output: { path: '/out', repository: 'shared/out', tag: 't' } });
    wf.addStep('two', { image, command: ['true'], output: { path: '/out', repository: 'shared/out', tag: 't' } });
    expect(() => app.synth()).toThrow(/steps "wf-one" and "wf-two" both push cache:5000\/shared\/out:r1-t\. Give one of them another repository or tag/);
  });

  test('a cycle is named step by step', () => {
    const { app, wf } = workflow();
    const a = wf.addStep('a', { image, command: ['true'], output: { path: '/out' } });
    const b = wf.addStep('b', { image, command: ['true'], output: { path: '/out' }, inputs: [{ artifact: a.output, path: '/in' }] });
    const c = wf.addStep('c', { image, command: ['true'], output: { path: '/out' }, inputs: [{ artifact: b.output, path: '/in' }] });
    a.addInput({ artifact: c.output, path: '/in' });
    expect(() => app.synth()).toThrow(/the steps form a cycle: "wf-a" -> "wf-b" -> "wf-c" -> "wf-a"\. A step cannot wait for its own output/);
  });

  test('a step reading its own output is a cycle', () => {
    const { app, wf } = workflow();
    const a = wf.addStep('a', { image, command: ['true'], output: { path: '/out' } });
    a.addInput({ artifact: a.output, path: '/in' });
    expect(() => app.synth()).toThrow(/the steps form a cycle: "wf-a" -> "wf-a"/);
  });
});

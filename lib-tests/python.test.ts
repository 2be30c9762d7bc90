import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { App, Chart, Duration, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { OrasCsiDriver, OrasRegistry, OrasWorkflow } from '../src';
import { describeWithPeers, requirePeer, run } from './util/peers';

const root = join(__dirname, '..');
const versions = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).devDependencies as Record<string, string>;

/** The app of lib-tests/python/app.py, in TypeScript: the objects both must synthesize. */
function typescriptApp(): Record<string, unknown[]> {
  const app = new App();
  const registryChart = new Chart(app, 'registry');
  new OrasRegistry(registryChart, 'Registry', { name: 'oras' });

  const workflowChart = new Chart(app, 'workflow');
  const workflow = new OrasWorkflow(workflowChart, 'Workflow', {
    name: 'hello',
    registry: OrasRegistry.fromHost('oras:5000', { plainHttp: true }),
    runId: 'r0python',
    inputTimeout: Duration.minutes(10),
  });
  const hello = workflow.addStep('greeting', { image: 'docker.io/library/busybox:1.36.1', command: ['sh', '-c', 'echo hello > /out/greeting.txt'], output: { path: '/out' } });
  const world = workflow.addStep('subject', { image: 'docker.io/library/busybox:1.36.1', command: ['sh', '-c', 'echo world > /out/subject.txt'], output: { path: '/out' } });
  workflow.addStep('combine', {
    image: 'docker.io/library/busybox:1.36.1',
    command: ['sh', '-c', 'cat /in/a/greeting.txt /in/b/subject.txt | tee /out/message.txt'],
    inputs: [{ artifact: hello.output, path: '/in/a' }, { artifact: world.output, path: '/in/b' }],
    output: { path: '/out', tag: 'message' },
    outputPipe: 'combine.log',
  });

  const csiChart = new Chart(app, 'csi', { namespace: 'oras-csi' });
  const driver = new OrasCsiDriver(csiChart, 'Driver');
  const models = driver.volume(csiChart, 'Models', OrasRegistry.fromHost('oras.default.svc:5000', { plainHttp: true }).artifact('models/demo', 'v1'), { name: 'models' });
  new kplus.Pod(csiChart, 'Demo', {
    containers: [{ name: 'main', image: 'docker.io/library/busybox:1.36.1', command: ['ls', '-R', '/models'], volumeMounts: [{ path: '/models', volume: models, readOnly: true }] }],
  });
  return { registry: Testing.synth(registryChart), workflow: Testing.synth(workflowChart), csi: Testing.synth(csiChart) };
}

describeWithPeers(['python3'], 'the Python package (jsii target cdk8s_oras) with cdk8s from PyPI', () => {
  let work: string;
  let python: string;

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'cdk8s-oras-python-'));
    // The wheel, built by jsii-pacmak from the compiled assembly (.jsii) as `npx projen package:python` does.
    const pacmak = run(process.execPath, [join(root, 'node_modules', 'jsii-pacmak', 'bin', 'jsii-pacmak'), '--target', 'python', '--outdir', join(work, 'dist')],
      { cwd: root, timeoutMs: 600_000 });
    if (pacmak.status !== 0) throw new Error(`jsii-pacmak failed:\n${pacmak.output}`);
    const wheel = readdirSync(join(work, 'dist', 'python')).find((file) => file.endsWith('.whl'));
    if (!wheel) throw new Error(`jsii-pacmak made no wheel: ${readdirSync(join(work, 'dist', 'python')).join(', ')}`);
    const venv = run(requirePeer('python3'), ['-m', 'venv', join(work, 'venv')]);
    if (venv.status !== 0) throw new Error(`python3 -m venv failed:\n${venv.output}`);
    python = join(work, 'venv', 'bin', 'python');
    // The versions the npm package is built and tested with, from PyPI.
    const pip = run(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check',
      `cdk8s==${versions.cdk8s.replace(/^[\^~]/, '')}`, `cdk8s-plus-27==${versions['cdk8s-plus-27'].replace(/^[\^~]/, '')}`,
      `constructs==${versions.constructs.replace(/^[\^~]/, '')}`, join(work, 'dist', 'python', wheel)], { timeoutMs: 600_000 });
    if (pip.status !== 0) throw new Error(`pip install failed:\n${pip.output}`);
  }, 1_200_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  test('a registry, a workflow and a CSI volume synthesized from Python equal the same app in TypeScript', () => {
    // jsii's Node process warns that Node 20 is past its end of life: the machine's Node, not the package's concern.
    // The variable takes the major versions to be silent about.
    const major = process.versions.node.split('.')[0];
    const env = { ...process.env, JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION: major, JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION: major };
    const result = run(python, [join(__dirname, 'python', 'app.py')], { timeoutMs: 300_000, env });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const fromPython = JSON.parse(result.stdout) as Record<string, unknown[]>;
    const fromTypescript = typescriptApp();
    expect(Object.keys(fromPython)).toEqual(['registry', 'workflow', 'csi']);
    for (const chart of Object.keys(fromTypescript)) expect(fromPython[chart]).toEqual(fromTypescript[chart]);
    // Not vacuous: the workflow's Jobs carry their pull, run and push containers.
    const jobs = fromPython.workflow.filter((o: any) => o.kind === 'Job') as any[];
    expect(jobs).toHaveLength(3);
    expect(jobs.find((j) => j.metadata.name.includes('combine')).spec.suspend).toBe(true);
  });
});

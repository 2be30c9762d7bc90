import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Chart, Duration, Size, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { HelloWorkflow } from '../../examples/hello-workflow/main';
import { OrasArtifact, OrasRegistry, OrasWorkflow } from '../../src';
import { PROVENANCE } from '../../src/injection';
import { NOT_RUN_EXIT_CODE } from '../../src/wrapper';
import { NODE_IMAGES } from '../util/images';
import { KubeCluster } from '../util/kube-node';
import { describeOnNode, useNamespace } from '../util/node';
import { requirePeer, run } from '../util/peers';

const root = join(__dirname, '..', '..');
const dist = (file: string) => join(root, 'dist', file);

/** The manifest of `reference` (host replaced by `address`), through the oras CLI. */
function manifestOf(address: string, reference: string): any {
  const fetched = run(requirePeer('oras'), ['manifest', 'fetch', '--plain-http', reference.replace(/^[^/]+/, address)]);
  if (fetched.status !== 0) throw new Error(`oras manifest fetch ${reference}: ${fetched.output}`);
  return JSON.parse(fetched.stdout);
}

/** PIDs (on this machine) of the processes whose argv holds every one of `words`. */
function pidsWith(...words: string[]): number[] {
  return readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).filter((pid) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return words.every((word) => argv.includes(word));
    } catch {
      return false;
    }
  }).map(Number);
}

/** A chart with a workflow `name` whose steps use the namespace's registry. */
function workflowNamed(name: string, suspendUntilInputsExist = true): { chart: Chart; workflow: OrasWorkflow } {
  const chart = Testing.chart();
  const workflow = new OrasWorkflow(chart, name, { name, registry: OrasRegistry.fromHost('oras:5000', { plainHttp: true }), runId: 'r1', suspendUntilInputsExist });
  return { chart, workflow };
}

function exists(address: string, reference: string): boolean {
  return run(requirePeer('oras'), ['manifest', 'fetch', '--plain-http', '--descriptor', reference.replace(/^[^/]+/, address)]).status === 0;
}

describeOnNode('workflows on a Kubernetes node', (cluster: KubeCluster) => {
  describe('dist/oras-registry.yaml and dist/oras-hello-workflow.yaml, in one kubectl apply', () => {
    const namespace = useNamespace(cluster, 'hello');

    test('every Job completes, the fan-in prints the README\'s line, and the oras CLI pulls the result', async () => {
      cluster.kubectlOk(['apply', '-n', namespace.name, '-f', dist('oras-registry.yaml'), '-f', dist('oras-hello-workflow.yaml')]);
      const outcomes = await cluster.jobOutcomes(namespace.name, ['hello-greeting-r0example', 'hello-subject-r0example', 'hello-combine-r0example'], 240_000);
      expect(outcomes).toEqual({ 'hello-greeting-r0example': 'Complete', 'hello-subject-r0example': 'Complete', 'hello-combine-r0example': 'Complete' });
      expect(cluster.kubectlOk(['logs', '-n', namespace.name, 'job/hello-combine-r0example', '-c', 'main'])).toBe('hello, world!\n');

      const example = new HelloWorkflow(Testing.app(), 'hello');
      const address = await cluster.serviceAddress(namespace.name, 'oras', 5000);
      const scratch = mkdtempSync(join(tmpdir(), 'oras-node-'));
      try {
        const pulled = run(requirePeer('oras'), ['pull', '--plain-http', example.combine.output.reference.replace(/^[^/]+/, address), '-o', scratch]);
        expect(pulled.output).toContain('Pulled');
        expect(readFileSync(join(scratch, 'message.txt'), 'utf8')).toBe('hello, world!\n');
        expect(readFileSync(join(scratch, 'combine.log'), 'utf8')).toBe('hello, world!\n');
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
      const annotations = manifestOf(address, example.combine.output.reference).annotations;
      expect(annotations[PROVENANCE.STEP]).toBe('hello-combine');
      expect(annotations[PROVENANCE.EXIT_CODE]).toBe('0');
    });
  });

  describe('reruns and memoization', () => {
    const namespace = useNamespace(cluster, 'rerun');
    let address = '';

    beforeAll(async () => {
      address = await cluster.deployRegistry(namespace.name, 120);
    });

    /**
     * One run of a workflow with two chains, first -> firstUser and second -> secondUser.
     * Each command writes its pod's name, so an output shows which run made it.
     */
    function synthRun(runId: string, secondWord: string) {
      const chart = Testing.chart();
      const workflow = new OrasWorkflow(chart, 'Wf', { name: 'memo', registry: OrasRegistry.fromHost('oras:5000', { plainHttp: true }), runId });
      const step = (id: string, command: string, input?: OrasArtifact) => workflow.addStep(id, {
        image: NODE_IMAGES.busybox,
        command: ['sh', '-c', `${command}; echo "$HOSTNAME" > /out/made-by.txt`],
        inputs: input ? [{ artifact: input, path: '/in' }] : [],
        output: { path: '/out' },
      });
      const first = step('first', 'echo one > /out/word.txt');
      const second = step('second', `echo ${secondWord} > /out/word.txt`);
      const firstUser = step('first-user', 'tr a-z A-Z < /in/word.txt > /out/word.txt', first.output);
      const secondUser = step('second-user', 'tr a-z A-Z < /in/word.txt > /out/word.txt', second.output);
      return { chart, steps: [first, second, firstUser, secondUser] };
    }

    /** Applies a run, waits for every Job, and says for each step whether its command ran, and who made its output. */
    async function applyRun(runId: string, secondWord: string) {
      const { chart, steps } = synthRun(runId, secondWord);
      cluster.apply({ objects: Testing.synth(chart), namespace: namespace.name });
      const outcomes = await cluster.jobOutcomes(namespace.name, steps.map((s) => s.name), 180_000);
      expect(Object.values(outcomes)).toEqual(steps.map(() => 'Complete'));
      return Object.fromEntries(steps.map((s) => {
        const log = cluster.kubectlOk(['logs', '-n', namespace.name, `job/${s.name}`, '-c', 'main']);
        const annotations = manifestOf(address, s.output.reference).annotations;
        const scratch = mkdtempSync(join(tmpdir(), 'oras-node-'));
        try {
          expect(run(requirePeer('oras'), ['pull', '--plain-http', s.output.reference.replace(/^[^/]+/, address), '-o', scratch]).status).toBe(0);
          return [s.stepName, {
            memoized: /^oras-wrap: memoized: /.test(log),
            from: annotations[PROVENANCE.MEMOIZED_FROM],
            word: readFileSync(join(scratch, 'word.txt'), 'utf8').trim(),
            madeBy: readFileSync(join(scratch, 'made-by.txt'), 'utf8').trim(),
          }];
        } finally {
          rmSync(scratch, { recursive: true, force: true });
        }
      }));
    }

    test('a second apply runs next to the first and runs nothing; a changed step reruns itself and what reads it, nothing else', async () => {
      const one = await applyRun('m1', 'two');
      expect(Object.values(one).map((s) => s.memoized)).toEqual([false, false, false, false]);
      expect(one['memo-first-user'].word).toBe('ONE');

      // Same definition, new run id: new Jobs beside the old ones (still there), every step memoized.
      const two = await applyRun('m2', 'two');
      expect(cluster.getJson(['get', 'jobs', '-n', namespace.name, '-l', 'oras.land/workflow=memo']).items).toHaveLength(8);
      for (const name of Object.keys(two)) {
        expect(two[name]).toMatchObject({ memoized: true, word: one[name].word, madeBy: one[name].madeBy });
        expect(two[name].from).toMatch(new RegExp(`^oras:5000/memo/${name.replace(/^memo-/, '')}@sha256:[0-9a-f]{64}$`));
      }

      // The second step's command changes: it and its reader run again; the first chain stays memoized.
      const three = await applyRun('m3', 'deux');
      expect(Object.fromEntries(Object.entries(three).map(([name, s]) => [name, s.memoized]))).toEqual({
        'memo-first': true, 'memo-second': false, 'memo-first-user': true, 'memo-second-user': false,
      });
      expect(three['memo-second-user'].word).toBe('DEUX');
      expect(three['memo-second-user'].madeBy).not.toBe(one['memo-second-user'].madeBy);
    });
  });

  describe('an image without a shell (distroless, scratch)', () => {
    const namespace = useNamespace(cluster, 'shellless');
    let address = '';

    beforeAll(async () => {
      address = await cluster.deployRegistry(namespace.name, 120);
    });

    test('the runtime\'s static shell runs the wrapper: the step reads its input, writes its output, pipes stdout and ends with its exit code', async () => {
      const { chart, workflow } = workflowNamed('bare');
      const source = workflow.addStep('source', { image: NODE_IMAGES.busybox, command: ['sh', '-c', 'echo "from busybox" > /out/source.txt'], output: { path: '/out' } });
      const bare = workflow.addStep('bare', {
        image: NODE_IMAGES.shellless,
        command: ['/busybox', 'cat', '/in/source.txt'],
        inputs: [{ artifact: source.output, path: '/in' }],
        output: { path: '/out' },
        outputPipe: 'stdout.txt',
      });
      const failing = workflow.addStep('failing', { image: NODE_IMAGES.shellless, command: ['/busybox', 'false'], memoize: false });
      cluster.apply({ objects: Testing.synth(chart), namespace: namespace.name });
      expect(await cluster.jobOutcomes(namespace.name, [source.name, bare.name, failing.name], 120_000))
        .toEqual({ [source.name]: 'Complete', [bare.name]: 'Complete', [failing.name]: 'Failed' });
      // The image really has no shell.
      const [pod] = cluster.podsOfJob(namespace.name, bare.name);
      expect(cluster.containerState(pod, 'oras-shell').terminated.exitCode).toBe(0);
      expect(cluster.kubectlOk(['logs', '-n', namespace.name, pod.metadata.name, '-c', 'main'])).toBe('from busybox\n');
      const scratch = mkdtempSync(join(tmpdir(), 'oras-node-'));
      try {
        expect(run(requirePeer('oras'), ['pull', '--plain-http', bare.output.reference.replace(/^[^/]+/, address), '-o', scratch]).status).toBe(0);
        expect(readFileSync(join(scratch, 'stdout.txt'), 'utf8')).toBe('from busybox\n');
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
      const [failed] = cluster.podsOfJob(namespace.name, failing.name);
      expect(cluster.containerState(failed, 'main').terminated.exitCode).toBe(1);
    });
  });

  describe('steps that fail', () => {
    const namespace = useNamespace(cluster, 'failing');
    let address = '';

    beforeAll(async () => {
      address = await cluster.deployRegistry(namespace.name, 120);
    });

    test('exit 3 fails the Job with 3 and pushes nothing; uploadOnFailure pushes to -failed; a waiting consumer gives up after inputTimeout', async () => {
      // The waiting path (external inputs, and workflows whose steps do not start suspended): advance.test.ts has the suspended one.
      const { chart, workflow } = workflowNamed('fail', false);
      const failing = workflow.addStep('three', { image: NODE_IMAGES.busybox, command: ['sh', '-c', 'echo partial > /out/partial.txt; exit 3'], output: { path: '/out' } });
      const flagged = workflow.addStep('flagged', {
        image: NODE_IMAGES.busybox, command: ['sh', '-c', 'echo partial > /out/partial.txt; exit 4'], output: { path: '/out' }, uploadOnFailure: true,
      });
      workflow.addStep('after', {
        image: NODE_IMAGES.busybox, command: ['cat', '/in/partial.txt'], inputs: [{ artifact: failing.output, path: '/in' }], inputTimeout: Duration.seconds(10),
      });
      cluster.apply({ objects: Testing.synth(chart), namespace: namespace.name });
      const outcomes = await cluster.jobOutcomes(namespace.name, ['fail-three-r1', 'fail-flagged-r1', 'fail-after-r1'], 180_000);
      expect(outcomes).toEqual({ 'fail-three-r1': 'Failed', 'fail-flagged-r1': 'Failed', 'fail-after-r1': 'Failed' });

      const [three] = cluster.podsOfJob(namespace.name, 'fail-three-r1');
      expect(cluster.containerState(three, 'main').terminated.exitCode).toBe(3);
      expect(cluster.kubectlOk(['logs', '-n', namespace.name, three.metadata.name, '-c', 'oras-push'])).toContain('the command exited 3; nothing is pushed');
      expect(exists(address, failing.output.reference)).toBe(false);

      expect(exists(address, flagged.output.reference)).toBe(false);
      expect(manifestOf(address, `${flagged.output.reference}-failed`).annotations[PROVENANCE.EXIT_CODE]).toBe('4');

      const [after] = cluster.podsOfJob(namespace.name, 'fail-after-r1');
      expect(cluster.containerState(after, 'oras-pull').terminated.exitCode).toBe(1);
      expect(cluster.kubectlOk(['logs', '-n', namespace.name, after.metadata.name, '-c', 'oras-pull']))
        .toMatch(/input .*\/fail\/three:r1-output is not there: .*timed out after 10(\.0)? s.*The step that produces it may have failed/);
      // The main container started, waited for the inputs, and ended without running the command.
      expect(cluster.containerState(after, 'main').terminated.exitCode).toBe(NOT_RUN_EXIT_CODE);
      expect(cluster.kubectlOk(['logs', '-n', namespace.name, after.metadata.name, '-c', 'main']))
        .toMatch(new RegExp('^oras-wrap: the command did not run: its inputs could not be pulled: input .*/fail/three:r1-output is not there: .*[^.]\\. '
          + `The log of container oras-pull says more: kubectl logs ${after.metadata.name} -c oras-pull\n$`));
    });

    test('oras-pull killed without a word (SIGKILL): the command does not run, nothing is pushed, the pod ends within seconds', async () => {
      const { chart, workflow } = workflowNamed('orphan');
      const step = workflow.addStep('step', {
        image: NODE_IMAGES.busybox,
        command: ['sh', '-c', 'echo ran > /out/ran.txt'],
        inputs: [{ artifact: OrasArtifact.fromReference('oras:5000/orphan/never:r1'), path: '/in', external: true }],
        output: { path: '/out' },
        inputTimeout: Duration.minutes(5),
      });
      cluster.apply({ objects: Testing.synth(chart), namespace: namespace.name });
      // Kill oras-pull as the OOM killer would, once the main container waits for it.
      const pid = await cluster.until('oras-pull to wait beside a running main container', 60_000, () => {
        const [pod] = cluster.podsOfJob(namespace.name, 'orphan-step-r1');
        const pids = pidsWith('pull', 'oras:5000/orphan/never:r1=/oras-inputs/0');
        return pod && cluster.containerState(pod, 'main')?.running && pids.length === 1 && pids[0];
      });
      const killedAt = Date.now();
      process.kill(pid, 'SIGKILL');
      expect(await cluster.jobOutcomes(namespace.name, ['orphan-step-r1'], 60_000)).toEqual({ 'orphan-step-r1': 'Failed' });
      const [pod] = cluster.podsOfJob(namespace.name, 'orphan-step-r1');
      const terminated = (container: string) => cluster.containerState(pod, container).terminated;
      expect([terminated('oras-pull').exitCode, terminated('main').exitCode, terminated('oras-push').exitCode]).toEqual([137, NOT_RUN_EXIT_CODE, 0]);
      expect(Date.parse(terminated('oras-push').finishedAt) - killedAt).toBeLessThan(5_000);
      expect(cluster.kubectlOk(['logs', '-n', namespace.name, pod.metadata.name, '-c', 'main']))
        .toMatch(/^oras-wrap: the command did not run: oras-pull ended without pulling its inputs \(killed by SIGKILL, the OOM killer or the node\)/);
      expect(cluster.kubectlOk(['logs', '-n', namespace.name, pod.metadata.name, '-c', 'oras-push']))
        .toContain('the command did not run: oras-pull ended without pulling its inputs');
      expect(exists(address, step.output.reference)).toBe(false);
    });

    test('the wrapper killed without a word (SIGKILL): oras-push sees its PID go and ends within seconds, pushing nothing', async () => {
      const { chart, workflow } = workflowNamed('killed');
      const step = workflow.addStep('step', { image: NODE_IMAGES.busybox, command: ['sh', '-c', 'sleep 300', 'wrapped-sleeper'], output: { path: '/out' } });
      cluster.apply({ objects: Testing.synth(chart), namespace: namespace.name });
      // The wrapper's argv holds its name and the command's; the command's own process has no 'oras-wrap'.
      const pid = await cluster.until('the wrapper to run', 60_000, () => {
        const pids = pidsWith('oras-wrap', 'wrapped-sleeper');
        return pids.length === 1 && pids[0];
      });
      const killedAt = Date.now();
      process.kill(pid, 'SIGKILL');
      expect(await cluster.jobOutcomes(namespace.name, ['killed-step-r1'], 60_000)).toEqual({ 'killed-step-r1': 'Failed' });
      const [pod] = cluster.podsOfJob(namespace.name, 'killed-step-r1');
      expect(Date.parse(cluster.containerState(pod, 'oras-push').terminated.finishedAt) - killedAt).toBeLessThan(5_000);
      expect(cluster.kubectlOk(['logs', '-n', namespace.name, pod.metadata.name, '-c', 'oras-push']))
        .toContain('the app container ended without reporting an exit code');
      expect(exists(address, step.output.reference)).toBe(false);
    });

    test('a main container killed by the kernel for memory: the pod ends within seconds and nothing is pushed', async () => {
      const { chart, workflow } = workflowNamed('oom');
      const step = workflow.addStep('victim', {
        image: NODE_IMAGES.busybox,
        // A shell variable that grows past the limit.
        command: ['sh', '-c', 'echo started; x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo never'],
        output: { path: '/out' },
        resources: {
          memory: { request: Size.mebibytes(16), limit: Size.mebibytes(32) },
          cpu: { request: kplus.Cpu.millis(100), limit: kplus.Cpu.units(1) },
        },
      });
      cluster.apply({ objects: Testing.synth(chart), namespace: namespace.name });
      expect(await cluster.jobOutcomes(namespace.name, ['oom-victim-r1'], 120_000)).toEqual({ 'oom-victim-r1': 'Failed' });
      const [pod] = cluster.podsOfJob(namespace.name, 'oom-victim-r1');
      const main = cluster.containerState(pod, 'main').terminated;
      const push = cluster.containerState(pod, 'oras-push').terminated;
      expect({ reason: main.reason, exitCode: main.exitCode }).toEqual({ reason: 'OOMKilled', exitCode: 137 });
      expect(Date.parse(push.finishedAt) - Date.parse(main.finishedAt)).toBeLessThan(15_000);
      // The kernel kills the biggest process: the command (the wrapper then reports 137) or the wrapper itself.
      expect(cluster.kubectlOk(['logs', '-n', namespace.name, pod.metadata.name, '-c', 'oras-push']))
        .toMatch(/the command exited 137; nothing is pushed|ended without reporting an exit code/);
      expect(exists(address, step.output.reference)).toBe(false);
    });

    test('argv with spaces, quotes, $ and globs arrives unchanged, under another uid than the runtime\'s', async () => {
      const argv = ['a b', 'it\'s', '"quoted"', '$HOME', '$(id)', '*', '', 'tab\there'];
      const { chart, workflow } = workflowNamed('argv');
      const step = workflow.addStep('echo', {
        image: NODE_IMAGES.busybox,
        command: ['sh', '-c', 'for a in "$@"; do printf "<%s>\\n" "$a"; done > /out/argv.txt', 'argv0'],
        args: argv,
        output: { path: '/out' },
        // The wrapper writes its state in the emptyDir that oras-push reads, whatever its uid.
        security: { user: 1000, group: 1000 },
      });
      cluster.apply({ objects: Testing.synth(chart), namespace: namespace.name });
      expect(await cluster.jobOutcomes(namespace.name, ['argv-echo-r1'], 120_000)).toEqual({ 'argv-echo-r1': 'Complete' });
      const scratch = mkdtempSync(join(tmpdir(), 'oras-node-'));
      try {
        expect(run(requirePeer('oras'), ['pull', '--plain-http', step.output.reference.replace(/^[^/]+/, address), '-o', scratch]).status).toBe(0);
        expect(readFileSync(join(scratch, 'argv.txt'), 'utf8')).toBe(argv.map((a) => `<${a}>\n`).join(''));
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
    });
  });
});

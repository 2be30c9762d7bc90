import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Duration, Testing } from 'cdk8s';
import { HelloWorkflow } from '../../examples/hello-workflow/main';
import { pull } from '../../runtime/oci/pull';
import { parseReference } from '../../runtime/oci/reference';
import { RegistryError } from '../../runtime/oci/registry-client';
import { OrasRegistry, OrasRuntimeImage, OrasWorkflow } from '../../src';
import { PROVENANCE } from '../../src/injection';
import { expectValidKubernetes } from '../util/kubernetes-schema';
import { describeWithPeers, requirePeer, run } from '../util/peers';
import { BUSYBOX_IMAGE, buildBusyboxImage, buildRuntimeImage, podOfJob, PodResult, removePods, runPods } from '../util/pods';
import { useRegistry } from '../util/use-registry';

/**
 * The synthesized step Jobs run for real: each Job's pod template becomes a
 * pod in podman (host network, the registry on loopback), all applied at once.
 */
describeWithPeers(['podman', 'busybox', 'docker-registry', 'oras'], 'workflow steps on real pods (podman)', () => {
  const under = useRegistry();
  const played: string[] = [];
  let run_ = 0;

  beforeAll(() => {
    buildBusyboxImage();
    buildRuntimeImage();
  });
  afterAll(() => removePods(played));

  /** A fresh run id per scenario, so that scenarios never see each other's artifacts. */
  function runId(): string {
    return `t${Date.now().toString(36)}${run_++}`;
  }

  function registry() {
    return OrasRegistry.fromHost(under.registry.host, { plainHttp: true });
  }

  async function play(jobs: any[], suffix: string, during?: (pods: () => string[]) => Promise<void>): Promise<Record<string, PodResult>> {
    const pods = jobs.map((job) => podOfJob(job, suffix));
    played.push(...pods.map((p) => p.metadata.name));
    const results = await runPods(pods, 150_000, during);
    return Object.fromEntries(results.map((r) => [r.name.slice(0, -(suffix.length + 1)), r]));
  }

  async function manifestOf(reference: string) {
    const ref = parseReference(reference);
    return (await under.client.fetchManifest(ref.repository, ref.manifestReference)).manifest;
  }

  async function expectMissing(reference: string): Promise<void> {
    const ref = parseReference(reference);
    await expect(under.client.resolve(ref.repository, ref.manifestReference)).rejects.toBeInstanceOf(RegistryError);
  }

  test('hello-workflow: three Jobs applied at once; the fan-in step reads both outputs', async () => {
    const chart = new HelloWorkflow(Testing.app(), 'hello', {
      registry: registry(),
      image: BUSYBOX_IMAGE,
      runId: runId(),
      inputTimeout: Duration.seconds(90),
    });
    const manifests = Testing.synth(chart);
    expectValidKubernetes(manifests);
    const jobs = manifests.filter((m) => m.kind === 'Job');
    expect(jobs).toHaveLength(3);

    // The consumer goes first, so that only its waiting can order the run.
    const results = await play([jobs[2], jobs[0], jobs[1]], 'ok');
    for (const [name, result] of Object.entries(results)) {
      for (const [container, outcome] of Object.entries(result.containers)) {
        expect({ name, container, exitCode: outcome.exitCode, logs: outcome.exitCode ? outcome.logs : '' }).toEqual({ name, container, exitCode: 0, logs: '' });
      }
    }
    expect(results['hello-combine'].containers.main.logs).toContain('hello, world!');

    const scratch = mkdtempSync(join(tmpdir(), 'oras-e2e-'));
    try {
      const final = chart.combine.output.reference;
      await pull(under.client, parseReference(final), join(scratch, 'ours'));
      expect(readFileSync(join(scratch, 'ours', 'message.txt'), 'utf8')).toBe('hello, world!\n');
      expect(readFileSync(join(scratch, 'ours', 'combine.log'), 'utf8')).toBe('hello, world!\n');

      const oras = run(requirePeer('oras'), ['pull', '--plain-http', final, '-o', join(scratch, 'oras')]);
      expect(oras.status).toBe(0);
      expect(readFileSync(join(scratch, 'oras', 'message.txt'), 'utf8')).toBe('hello, world!\n');

      const annotations = (await manifestOf(final)).annotations ?? {};
      expect(annotations[PROVENANCE.STEP]).toBe('hello-combine');
      expect(annotations[PROVENANCE.IMAGE]).toBe(BUSYBOX_IMAGE);
      expect(annotations[PROVENANCE.EXIT_CODE]).toBe('0');
      const inputs = JSON.parse(annotations[PROVENANCE.INPUTS]) as string[];
      expect(inputs.sort()).toEqual([chart.hello.output.reference, chart.world.output.reference].sort().map((r) => expect.stringContaining(`${r}@sha256:`)));
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  test('a command that exits 3: its pod fails with 3, nothing is pushed, and its consumer gives up after inputTimeout', async () => {
    const chart = Testing.chart();
    const workflow = new OrasWorkflow(chart, 'Fail', { name: 'fail', registry: registry(), runId: runId(), runtimeImage: OrasRuntimeImage.default() });
    const failing = workflow.addStep('three', { image: BUSYBOX_IMAGE, command: ['sh', '-c', 'echo partial > /out/partial.txt; exit 3'], output: { path: '/out' } });
    const flagged = workflow.addStep('flagged', {
      image: BUSYBOX_IMAGE, command: ['sh', '-c', 'echo partial > /out/partial.txt; exit 4'], output: { path: '/out' }, uploadOnFailure: true,
    });
    workflow.addStep('after', {
      image: BUSYBOX_IMAGE, command: ['cat', '/in/partial.txt'], inputs: [{ artifact: failing.output, path: '/in' }], inputTimeout: Duration.seconds(5),
    });
    const jobs = Testing.synth(chart).filter((m) => m.kind === 'Job');
    const results = await play(jobs, 'fail');

    expect(results['fail-three'].containers.main.exitCode).toBe(3);
    expect(results['fail-three'].containers['oras-push'].exitCode).toBe(0);
    expect(results['fail-three'].containers['oras-push'].logs).toContain('the command exited 3; nothing is pushed');
    await expectMissing(failing.output.reference);

    expect(results['fail-flagged'].containers.main.exitCode).toBe(4);
    await expectMissing(flagged.output.reference);
    const failed = await manifestOf(`${flagged.output.reference}-failed`);
    expect(failed.annotations?.[PROVENANCE.EXIT_CODE]).toBe('4');

    const after = results['fail-after'];
    expect(after.containers['oras-pull'].exitCode).toBe(1);
    expect(after.containers['oras-pull'].logs).toMatch(/input .*\/fail\/three:t\w+-output is not there: timed out after 5 s.*The step that produces it may have failed/);
    expect(after.containers.main?.state ?? 'created').not.toBe('exited');
  });

  test('a main container killed with SIGKILL: the pod ends within seconds and nothing is pushed', async () => {
    const chart = Testing.chart();
    const workflow = new OrasWorkflow(chart, 'Kill', { name: 'kill', registry: registry(), runId: runId() });
    const step = workflow.addStep('victim', { image: BUSYBOX_IMAGE, command: ['sh', '-c', 'echo started; sleep 300'], output: { path: '/out' } });
    const jobs = Testing.synth(chart).filter((m) => m.kind === 'Job');
    let killedAt = 0;
    const results = await play(jobs, 'kill', async (pods) => {
      const container = `${pods()[0]}-main`;
      const podman = requirePeer('podman');
      for (let i = 0; i < 300; i++) {
        if (run(podman, ['logs', container]).output.includes('started')) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(run(podman, ['kill', '--signal', 'KILL', container]).status).toBe(0);
      killedAt = Date.now();
    });
    const victim = results['kill-victim'];
    expect(victim.containers.main.exitCode).toBe(137);
    expect(victim.containers['oras-push'].exitCode).toBe(1);
    expect(victim.containers['oras-push'].logs).toContain('ended without reporting an exit code');
    expect(Date.now() - killedAt).toBeLessThan(15_000);
    await expectMissing(step.output.reference);
  });

  test('argv with spaces, quotes, $ and globs arrives unchanged', async () => {
    const argv = ['a b', 'it\'s', '"quoted"', '$HOME', '$(id)', '*', '', 'tab\there'];
    const chart = Testing.chart();
    const workflow = new OrasWorkflow(chart, 'Argv', { name: 'argv', registry: registry(), runId: runId() });
    const step = workflow.addStep('echo', {
      image: BUSYBOX_IMAGE,
      command: ['sh', '-c', 'for a in "$@"; do printf "<%s>\\n" "$a"; done > /out/argv.txt', 'argv0'],
      args: argv,
      output: { path: '/out' },
    });
    const results = await play(Testing.synth(chart).filter((m) => m.kind === 'Job'), 'argv');
    expect(results['argv-echo'].containers.main.exitCode).toBe(0);
    const scratch = mkdtempSync(join(tmpdir(), 'oras-e2e-'));
    try {
      await pull(under.client, parseReference(step.output.reference), scratch);
      expect(readFileSync(join(scratch, 'argv.txt'), 'utf8')).toBe(argv.map((a) => `<${a}>\n`).join(''));
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});

import { Chart, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { OrasRegistry, OrasWorkflow, OrasWorkflowStep } from '../../src';
import { NODE_IMAGES } from '../util/images';
import { KubeCluster } from '../util/kube-node';
import { describeOnNode, useNamespace } from '../util/node';
import { requirePeer, run } from '../util/peers';

/** The main container's request: two steps fit the 2-CPU node at a time (with the runtime containers' 100m, the registry and DNS). */
const HEAVY = { cpu: { request: kplus.Cpu.millis(700), limit: kplus.Cpu.units(1) } };

function workflowNamed(name: string): { chart: Chart; workflow: OrasWorkflow } {
  const chart = Testing.chart();
  const workflow = new OrasWorkflow(chart, name, { name, registry: OrasRegistry.fromHost('oras:5000', { plainHttp: true }), runId: 'r1' });
  return { chart, workflow };
}

/** A step that works `seconds`, then writes its name into its output (read from every input first). */
function step(workflow: OrasWorkflow, id: string, inputs: OrasWorkflowStep[], seconds = 1): OrasWorkflowStep {
  return workflow.addStep(id, {
    image: NODE_IMAGES.busybox,
    command: ['sh', '-c', `sleep ${seconds}; ${inputs.map((_, i) => `cat /in/${i}/name.txt >/dev/null && `).join('')}echo ${id} > /out/name.txt`],
    inputs: inputs.map((producer, i) => ({ artifact: producer.output, path: `/in/${i}` })),
    output: { path: '/out' },
    resources: HEAVY,
    memoize: false,
  });
}

/** When each pod of the namespace was created (ms), by Job name. */
function podCreation(cluster: KubeCluster, namespace: string): Map<string, number> {
  return new Map((cluster.getJson(['get', 'pods', '-n', namespace]).items as any[])
    .map((pod) => [pod.metadata.labels['job-name'], Date.parse(pod.metadata.creationTimestamp)]));
}

describeOnNode('workflows larger than the node: suspended Jobs that producers resume', (cluster: KubeCluster) => {
  const namespace = useNamespace(cluster, 'advance');
  let address = '';

  beforeAll(async () => {
    address = await cluster.deployRegistry(namespace.name, 120);
  });

  /** When the output of `producer` was stored (its manifest's creation time, whole seconds). */
  function outputCreated(producer: OrasWorkflowStep): number {
    const fetched = run(requirePeer('oras'), ['manifest', 'fetch', '--plain-http', producer.output.reference.replace(/^[^/]+/, address)]);
    expect(fetched.status).toBe(0);
    return Date.parse(JSON.parse(fetched.stdout).annotations['org.opencontainers.image.created']);
  }

  /** Applies the objects (Jobs in reverse order), and follows how many step pods exist at once until every Job ends. */
  async function applyAndFollow(objects: any[], steps: OrasWorkflowStep[], timeoutMs: number) {
    const jobs = objects.filter((o) => o.kind === 'Job').reverse();
    const started = Date.now();
    cluster.apply({ objects: [...objects.filter((o) => o.kind !== 'Job'), ...jobs], namespace: namespace.name });
    // Pods that exist (a resumed Job's pod may wait, Pending, for capacity: it holds none), and pods on the node.
    let peak = 0;
    let peakScheduled = 0;
    const follow = setInterval(() => {
      const pods = (cluster.getJson(['get', 'pods', '-n', namespace.name, '-l', 'oras.land/workflow']).items as any[])
        .filter((p) => !['Succeeded', 'Failed'].includes(p.status.phase));
      peak = Math.max(peak, pods.length);
      peakScheduled = Math.max(peakScheduled, pods.filter((p) => p.spec.nodeName).length);
    }, 1000);
    try {
      const outcomes = await cluster.jobOutcomes(namespace.name, steps.map((s) => s.name), timeoutMs);
      return { outcomes, seconds: (Date.now() - started) / 1000, peak, peakScheduled };
    } finally {
      clearInterval(follow);
    }
  }

  test('a 4-step chain whose steps fit two at a time, applied in reverse order, completes; no pod exists before its input', async () => {
    const { chart, workflow } = workflowNamed('chain');
    const s1 = step(workflow, 's1', [], 2);
    const s2 = step(workflow, 's2', [s1], 2);
    const s3 = step(workflow, 's3', [s2], 2);
    const s4 = step(workflow, 's4', [s3], 2);
    const { outcomes, peak } = await applyAndFollow(Testing.synth(chart), [s1, s2, s3, s4], 300_000);
    expect(Object.values(outcomes)).toEqual(['Complete', 'Complete', 'Complete', 'Complete']);
    expect(peak).toBeLessThanOrEqual(2);
    expectPodsAfterInputs([s2, s3, s4]);
    // A server-side re-apply does not take spec.suspend back from the producer that resumed the Job: a conflict, nothing changed.
    const again = cluster.kubectl(['apply', '--server-side', '-n', namespace.name, '-f', '-'],
      { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: Testing.synth(chart).filter((o) => o.metadata.name === s2.name) }) });
    expect(again.status).not.toBe(0);
    expect(again.output).toMatch(/conflict[\s\S]*\.spec\.suspend/);
    expect(cluster.getJson(['get', 'job', '-n', namespace.name, s2.name]).spec.suspend).toBe(false);
  });

  /** Each step's pod was created after every output it reads existed (the manifests' times have whole seconds). */
  function expectPodsAfterInputs(consumers: OrasWorkflowStep[]): void {
    const created = podCreation(cluster, namespace.name);
    const stored = new Map<OrasWorkflowStep, number>();
    for (const consumer of consumers) {
      for (const producer of consumer.node.scope instanceof OrasWorkflow ? consumer.node.scope._producersOf(consumer) : []) {
        if (!stored.has(producer)) stored.set(producer, outputCreated(producer));
        expect(created.get(consumer.name)!).toBeGreaterThanOrEqual(stored.get(producer)!);
      }
    }
  }

  test('a 30-step DAG with fan-out and fan-in completes under the same limit', async () => {
    const { chart, workflow } = workflowNamed('dag');
    const root = step(workflow, 'root', []);
    const wide = Array.from({ length: 8 }, (_, i) => step(workflow, `fan${i}`, [root]));
    const merged = Array.from({ length: 4 }, (_, i) => step(workflow, `merge${i}`, [wide[2 * i], wide[2 * i + 1]]));
    const again = Array.from({ length: 8 }, (_, i) => step(workflow, `again${i}`, [merged[i % 4]]));
    const pairs = Array.from({ length: 4 }, (_, i) => step(workflow, `pair${i}`, [again[2 * i], again[2 * i + 1]]));
    const quads = Array.from({ length: 4 }, (_, i) => step(workflow, `quad${i}`, [pairs[i]]));
    const sink = step(workflow, 'sink', quads);
    const steps = [root, ...wide, ...merged, ...again, ...pairs, ...quads, sink];
    expect(steps).toHaveLength(30);
    const { outcomes, seconds, peak, peakScheduled } = await applyAndFollow(Testing.synth(chart), steps, 900_000);
    expect(Object.values(outcomes).every((o) => o === 'Complete')).toBe(true);
    expect(peakScheduled).toBeLessThanOrEqual(2);
    expectPodsAfterInputs(steps.slice(1));
    const stepSeconds = (cluster.getJson(['get', 'jobs', '-n', namespace.name, '-l', 'oras.land/workflow=dag']).items as any[])
      .reduce((sum, job) => sum + (Date.parse(job.status.completionTime) - Date.parse(job.status.startTime)) / 1000, 0);
    // Recorded for the README: the time from apply to completion against the sum of the step times.
    process.stderr.write(`30-step DAG, two steps at a time: ${seconds.toFixed(1)} s from apply to completion; the steps' own times `
      + `(Job start to completion) add up to ${stepSeconds.toFixed(1)} s; at most ${peak} step pods at once, ${peakScheduled} of them on the node\n`);
  });

  test('a failing step\'s dependents never start: they stay suspended, labelled blocked-by with the reason', async () => {
    const { chart, workflow } = workflowNamed('broken');
    const source = step(workflow, 'source', []);
    const failing = workflow.addStep('fails', {
      image: NODE_IMAGES.busybox, command: ['sh', '-c', 'exit 3'], inputs: [{ artifact: source.output, path: '/in' }], output: { path: '/out' }, memoize: false,
    });
    const child = step(workflow, 'child', [failing]);
    const grandchild = step(workflow, 'grandchild', [child, source]);
    const sibling = step(workflow, 'sibling', [source]);
    cluster.apply({ objects: Testing.synth(chart), namespace: namespace.name });
    expect(await cluster.jobOutcomes(namespace.name, [source.name, failing.name, sibling.name], 180_000))
      .toEqual({ [source.name]: 'Complete', [failing.name]: 'Failed', [sibling.name]: 'Complete' });
    await cluster.until('the dependents are labelled', 60_000, () => [child, grandchild]
      .every((s) => cluster.getJson(['get', 'job', '-n', namespace.name, s.name]).metadata.labels['oras.land/blocked-by'] === 'broken-fails'));
    for (const blocked of [child, grandchild]) {
      const job = cluster.getJson(['get', 'job', '-n', namespace.name, blocked.name]);
      expect(job.spec.suspend).toBe(true);
      expect(job.metadata.annotations['oras.land/blocked-reason']).toBe('the command exited 3');
      expect(cluster.podsOfJob(namespace.name, blocked.name)).toEqual([]);
    }
    const table = cluster.kubectlOk(['get', 'jobs', '-n', namespace.name, '-l', 'oras.land/workflow=broken', '-L', 'oras.land/blocked-by']);
    expect(table).toMatch(new RegExp(`${child.name}\\s.*broken-fails`));
    expect(table).toMatch(new RegExp(`${grandchild.name}\\s.*broken-fails`));
  });
});

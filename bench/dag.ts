// A 200-step DAG on a real single-node Kubernetes cluster (the test node of
// lib-tests/util/kube-node.ts), as root: 10 layers of 20 steps, each step
// reading two steps of the layer before; the commands are `true`. Run with
// both ways a workflow advances, in the same run:
// - suspended Jobs that their producers resume (the default);
// - every pod started at once, waiting for its inputs (suspendUntilInputsExist: false).
// For each: the time from apply to the last Job's end (or the timeout), the
// peak number of step pods at once, and the registry's requests per second
// (its access log) while the workflow ran.
//
//   npx projen bench:dag [timeout minutes]      (default 10 per design)
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Testing } from 'cdk8s';
import { buildNodeImages, NODE_IMAGES } from '../lib-tests/util/images';
import { KubeNode } from '../lib-tests/util/kube-node';
import { requirePeer, run } from '../lib-tests/util/peers';
import { OrasRegistry, OrasWorkflow, OrasWorkflowStep } from '../src';

const timeoutMs = Number(process.argv[2] ?? 10) * 60_000;
const LAYERS = 10;
const WIDTH = 20;

function synth(suspend: boolean): { objects: any[]; names: string[] } {
  const chart = Testing.chart();
  const workflow = new OrasWorkflow(chart, 'Dag', {
    name: suspend ? 'dag-suspended' : 'dag-waiting',
    registry: OrasRegistry.fromHost('oras:5000', { plainHttp: true }),
    runId: 'r1',
    graph: false,
    suspendUntilInputsExist: suspend,
  });
  let previous: OrasWorkflowStep[] = [];
  for (let layer = 0; layer < LAYERS; layer++) {
    previous = Array.from({ length: WIDTH }, (_, i) => workflow.addStep(`l${layer}s${i}`, {
      image: NODE_IMAGES.busybox,
      command: ['true'],
      inputs: previous.length ? [previous[i], previous[(i + 1) % WIDTH]].map((p, k) => ({ artifact: p.output, path: `/in/${k}` })) : [],
      output: { path: '/out' },
      memoize: false,
    }));
  }
  return { objects: Testing.synth(chart), names: workflow.steps.map((s) => s.name) };
}

/** Requests the registry logged (its access log), all kinds. */
function registryRequests(node: KubeNode, namespace: string): number {
  const log = node.kubectlOk(['logs', '-n', namespace, 'deployment/oras', '--tail=-1'], { timeoutMs: 120_000 });
  return log.split('\n').filter((line) => /"(GET|HEAD|PUT|POST|PATCH|DELETE) \/v2\//.test(line)).length;
}

async function runDesign(node: KubeNode, suspend: boolean): Promise<string> {
  const namespace = suspend ? 'dag-suspended' : 'dag-waiting';
  node.kubectlOk(['create', 'namespace', namespace]);
  await node.deployRegistry(namespace, 180);
  const { objects, names } = synth(suspend);
  const requestsBefore = registryRequests(node, namespace);
  let peak = 0;
  const follow = setInterval(() => {
    const pods = (node.getJson(['get', 'pods', '-n', namespace, '-l', 'oras.land/workflow']).items as any[])
      .filter((p) => !['Succeeded', 'Failed'].includes(p.status.phase));
    peak = Math.max(peak, pods.length);
  }, 1000);
  const started = Date.now();
  node.apply({ objects, namespace });
  let done = 0;
  try {
    await node.until('every Job to end', timeoutMs, () => {
      const jobs = node.getJson(['get', 'jobs', '-n', namespace]).items as any[];
      done = jobs.filter((j) => (j.status.conditions ?? []).some((c: any) => ['Complete', 'Failed'].includes(c.type) && c.status === 'True')).length;
      return done === names.length;
    });
  } catch {
    // Reported below: how far it got.
  } finally {
    clearInterval(follow);
  }
  const seconds = (Date.now() - started) / 1000;
  const requests = registryRequests(node, namespace) - requestsBefore;
  node.kubectl(['delete', 'namespace', namespace, '--wait=true', '--timeout=300s'], { timeoutMs: 310_000 });
  const label = suspend ? 'suspended Jobs, resumed by producers' : 'every pod at once, waiting for inputs';
  const finished = done === names.length ? `${seconds.toFixed(0)} s` : `not done after ${seconds.toFixed(0)} s (${done} of ${names.length} ended)`;
  return `| ${label} | ${finished} | ${peak} | ${(requests / seconds).toFixed(1)} |`;
}

async function main(): Promise<void> {
  const images = mkdtempSync(join(tmpdir(), 'oras-bench-images-'));
  const node = await KubeNode.start({ imageArchives: buildNodeImages(images) });
  rmSync(images, { recursive: true, force: true });
  try {
    const rows = [await runDesign(node, true), await runDesign(node, false)];
    const date = new Date().toISOString().slice(0, 10);
    console.log(`\n${date}, a ${LAYERS * WIDTH}-step DAG (${LAYERS} layers of ${WIDTH}, two inputs each, \`true\` commands), one node `
      + `(kubelet ${run(requirePeer('kubelet'), ['--version']).stdout.trim()}, 2 cores), default requests\n`);
    console.log('| design | apply to the last Job\'s end | peak step pods at once | registry requests/s |');
    console.log('|---|---|---|---|');
    for (const row of rows) console.log(row);
  } finally {
    await node.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

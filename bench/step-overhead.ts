// Per-step overhead of the injection, measured on real pods (podman, host
// network, a registry on loopback): from pod start to command start, and
// from command exit to pod end, for an injected step and for the same bare
// command in the same run, with empty I/O and with 100 MB of output.
//
//   npx projen bench:steps [runs]      (default 5)
import { Testing } from 'cdk8s';
import { Distribution } from '../lib-tests/util/distribution';
import { median } from '../lib-tests/util/measure';
import { BUSYBOX_IMAGE, buildBusyboxImage, buildRuntimeImage, podOfJob, PodResult, removePods, runPods } from '../lib-tests/util/pods';
import { OrasRegistry, OrasWorkflow } from '../src';

const runs = Number(process.argv[2] ?? 5);

const CASES = [
  { name: 'empty I/O', command: ['true'] },
  { name: '100 MB of output', command: ['sh', '-c', 'head -c 104857600 /dev/urandom > /out/data.bin'] },
];

interface Sample {
  readonly startMs: number;
  readonly endMs: number;
}

/** Pod start (kube play) to command start, and command exit to the pod's last container exit. */
function sample(result: PodResult): Sample {
  const command = result.containers.main;
  const last = Math.max(...Object.values(result.containers).map((c) => c.finishedAt));
  if (Object.values(result.containers).some((c) => c.exitCode !== 0 || c.startedAt === 0)) {
    throw new Error(`pod ${result.name} failed: ${JSON.stringify(result.containers)}`);
  }
  return { startMs: command.startedAt - result.playedAt, endMs: last - command.finishedAt };
}

async function main(): Promise<void> {
  buildBusyboxImage();
  buildRuntimeImage();
  const registry = await Distribution.start();
  const pods: string[] = [];
  const rows: string[] = [];
  try {
    for (const benchCase of CASES) {
      const injected: Sample[] = [];
      const bare: Sample[] = [];
      for (let run = 0; run < runs; run++) {
        const chart = Testing.chart();
        const workflow = new OrasWorkflow(chart, 'Bench', {
          name: 'bench', registry: OrasRegistry.fromHost(registry.host, { plainHttp: true }), runId: `b${Date.now().toString(36)}${run}`, graph: false,
        });
        workflow.addStep('step', { image: BUSYBOX_IMAGE, command: benchCase.command, output: { path: '/out' } });
        const [job] = Testing.synth(chart).filter((m) => m.kind === 'Job');
        // The bare pod: the same main container and output volume, without the injection.
        const bareJob = JSON.parse(JSON.stringify(job));
        const spec = bareJob.spec.template.spec;
        const mainContainer = spec.containers[0];
        mainContainer.command = mainContainer.command.slice(mainContainer.command.indexOf('--') + 1);
        mainContainer.volumeMounts = [{ name: 'tmp', mountPath: '/tmp' }, { name: 'out', mountPath: '/out' }];
        bareJob.spec.template.spec = { ...spec, initContainers: [], containers: [mainContainer], volumes: [{ name: 'tmp', emptyDir: {} }, { name: 'out', emptyDir: {} }] };
        delete bareJob.spec.template.spec.shareProcessNamespace;
        for (const [kind, target] of (run % 2 ? [['bare', bare], ['injected', injected]] : [['injected', injected], ['bare', bare]]) as [string, Sample[]][]) {
          const pod = podOfJob(kind === 'bare' ? bareJob : job, `${kind}${run}`);
          pods.push(pod.metadata.name);
          const [result] = await runPods([pod], 120_000);
          target.push(sample(result));
          removePods([pod.metadata.name]);
        }
      }
      const m = (list: Sample[], key: keyof Sample) => median(list.map((s) => s[key]));
      rows.push(`| ${benchCase.name} | ${(m(bare, 'startMs') / 1000).toFixed(2)} s | ${(m(injected, 'startMs') / 1000).toFixed(2)} s | `
        + `${((m(injected, 'startMs') - m(bare, 'startMs')) / 1000).toFixed(2)} s | ${(m(bare, 'endMs') / 1000).toFixed(2)} s | `
        + `${(m(injected, 'endMs') / 1000).toFixed(2)} s | ${((m(injected, 'endMs') - m(bare, 'endMs')) / 1000).toFixed(2)} s |`);
    }
  } finally {
    removePods(pods);
    await registry.stop();
  }
  console.log(`\n${new Date().toISOString().slice(0, 10)}, podman kube play, medians of ${runs} runs\n`);
  console.log('| case | start: bare | start: injected | start overhead | end: bare | end: injected | end overhead |');
  console.log('|---|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

// Synth time of a generated 500-step workflow: a layered DAG where each step
// reads one or two outputs of earlier steps. Runs in-process, medians.
//
//   npx projen bench:synth [steps] [runs]      (defaults 500 and 5)
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { App, Chart } from 'cdk8s';
import { median } from '../lib-tests/util/measure';
import { OrasRegistry, OrasWorkflow, OrasWorkflowStep } from '../src';

const steps = Number(process.argv[2] ?? 500);
const runs = Number(process.argv[3] ?? 5);

function once(): { constructMs: number; synthMs: number } {
  const outdir = mkdtempSync(join(tmpdir(), 'oras-bench-synth-'));
  try {
    const started = process.hrtime.bigint();
    const app = new App({ outdir });
    const chart = new Chart(app, 'big');
    const workflow = new OrasWorkflow(chart, 'Wf', { name: 'big', registry: OrasRegistry.fromHost('cache:5000', { plainHttp: true }), runId: 'bench' });
    const made: OrasWorkflowStep[] = [];
    for (let i = 0; i < steps; i++) {
      const inputs = i === 0 ? [] : [made[Math.floor(i / 2)], made[i - 1]]
        .filter((s, k, all) => all.indexOf(s) === k)
        .map((s, k) => ({ artifact: s.output, path: `/in/${k}` }));
      made.push(workflow.addStep(`s${i}`, { image: 'busybox:1.36.1', command: ['sh', '-c', `echo ${i} > /out/n`], inputs, output: { path: '/out' } }));
    }
    const constructed = process.hrtime.bigint();
    app.synth();
    const done = process.hrtime.bigint();
    return { constructMs: Number(constructed - started) / 1e6, synthMs: Number(done - constructed) / 1e6 };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

const samples = Array.from({ length: runs }, once);
const total = median(samples.map((s) => s.constructMs + s.synthMs));
console.log(`\n${new Date().toISOString().slice(0, 10)}, ${steps} steps, medians of ${runs} runs`);
console.log(`construct ${median(samples.map((s) => s.constructMs)).toFixed(0)} ms, synth ${median(samples.map((s) => s.synthMs)).toFixed(0)} ms, total ${(total / 1000).toFixed(2)} s`);

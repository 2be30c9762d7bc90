// Admission latency of the webhook under a constant load from vegeta on
// loopback: 60 s at 200 and at 1000 requests per second, each request an
// annotated Pod to prepare. Reports p50, p99, errors and the webhook's peak RSS.
//
//   npx projen bench:webhook [seconds]      (default 60)
import { spawnSync } from 'child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { highWaterMiB } from '../lib-tests/util/measure';
import { requirePeer } from '../lib-tests/util/peers';
import { RunningWebhook } from '../lib-tests/util/webhook';
import { PREFIX } from '../runtime/webhook/annotations';

const seconds = Number(process.argv[2] ?? 60);
const RATES = [200, 1000];

async function main(): Promise<void> {
  const vegeta = requirePeer('vegeta');
  const webhook = await RunningWebhook.start();
  const dir = mkdtempSync(join(tmpdir(), 'oras-bench-webhook-'));
  const rows: string[] = [];
  try {
    const review = {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: 'bench',
        kind: { group: '', version: 'v1', kind: 'Pod' },
        operation: 'CREATE',
        namespace: 'team',
        object: {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'bench', annotations: { [`${PREFIX}oras-cache`]: 'orascache', [`${PREFIX}input-uri`]: 'data/in:one', [`${PREFIX}output-uri`]: 'data/out:one' } },
          spec: { containers: [{ name: 'app', image: 'busybox:1.36.1', command: ['sh', '-c', 'cp in.txt out.txt'], workingDir: '/work' }] },
        },
      },
    };
    writeFileSync(join(dir, 'body.json'), JSON.stringify(review));
    writeFileSync(join(dir, 'ca.pem'), webhook.ca);
    writeFileSync(join(dir, 'targets.txt'), `POST ${webhook.url}/mutate\nContent-Type: application/json\n@${join(dir, 'body.json')}\n`);
    // Warm up, so that the first figures are not the JIT's.
    spawnSync(vegeta, ['attack', '-rate=200/s', '-duration=3s', `-root-certs=${join(dir, 'ca.pem')}`, `-targets=${join(dir, 'targets.txt')}`, `-output=${join(dir, 'warm.bin')}`]);
    for (const rate of RATES) {
      const out = join(dir, `r${rate}.bin`);
      const attack = spawnSync(vegeta, ['attack', `-rate=${rate}/s`, `-duration=${seconds}s`, '-max-workers=64', `-root-certs=${join(dir, 'ca.pem')}`,
        `-targets=${join(dir, 'targets.txt')}`, `-output=${out}`], { encoding: 'utf8' });
      if (attack.status !== 0) throw new Error(`vegeta attack failed: ${attack.stderr}`);
      const report = JSON.parse(spawnSync(vegeta, ['report', '-type=json', out], { encoding: 'utf8' }).stdout);
      const ms = (ns: number) => (ns / 1e6).toFixed(2);
      const errors = report.requests - Math.round(report.success * report.requests);
      rows.push(`| ${rate}/s for ${seconds} s | ${report.requests} | ${ms(report.latencies['50th'])} ms | ${ms(report.latencies['99th'])} ms | `
        + `${errors} | ${Math.round(report.throughput)}/s | ${highWaterMiB(webhook.child.pid!).toFixed(0)} MiB |`);
    }
  } finally {
    await webhook.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`\n${new Date().toISOString().slice(0, 10)}, vegeta on loopback, one webhook process\n`);
  console.log('| load | requests | p50 | p99 | errors | throughput | webhook peak RSS |');
  console.log('|---|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

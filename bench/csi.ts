// The CSI node plugin on real bind mounts (run as root): warm publish latency
// (p50, p99; as a grpc-js client sees it, and inside the plugin), cold publish time against a raw `oras-runtime pull` of the same
// artifact, and 50 concurrent publishes of one artifact, on a node that holds
// 500 unrelated mounts (tmpfs, made and removed by the bench).
//
//   npx projen bench:csi [runs]      (default 5)
//   BENCH_CPU_PROF=dir               CPU profiles of the plugin (node --cpu-prof) in dir
import { ChildProcess, spawn } from 'child_process';
import { randomFillSync } from 'crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import * as grpc from '@grpc/grpc-js';
import { Distribution, freePort } from '../lib-tests/util/distribution';
import { measure, median } from '../lib-tests/util/measure';
import { run } from '../lib-tests/util/peers';
import { NodeService } from '../runtime/csi/protocol';
import { push } from '../runtime/oci/push';
import { parseReference } from '../runtime/oci/reference';
import { RegistryClient } from '../runtime/oci/registry-client';

const bundle = resolve(__dirname, '..', 'runtime', 'build', 'oras-runtime.cjs');
const runs = Number(process.argv[2] ?? 5);
const capability = { mount: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } };
/** Mounts that have nothing to do with the plugin: a busy node's pods. */
const unrelatedMounts = 500;
const cpuProfileDir = process.env.BENCH_CPU_PROF;

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** The mount points in this namespace, in mount order. */
function mountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => line.split(' ')[4]);
}

/** Mounts `count` small tmpfs under `dir`. */
function mountUnrelated(dir: string, count: number): void {
  for (let i = 0; i < count; i++) {
    const point = join(dir, `m-${i}`);
    mkdirSync(point, { recursive: true });
    const mounted = run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'bench', point]);
    if (mounted.status !== 0) throw new Error(`mount ${point}: ${mounted.output}`);
  }
}

/** Unmounts everything under `dir`, the last mounted first. */
function unmountUnder(dir: string): void {
  const under = () => mountPoints().filter((p) => p.startsWith(`${dir}/`)).reverse();
  if (under().length > 0) run('umount', ['--', ...under()]);
  if (under().length > 0) console.error(`left mounted: ${under().join(' ')}`);
}

/** Stops the plugin and waits for it to exit (so that a CPU profile is written). */
async function stopPlugin(plugin: ChildProcess): Promise<void> {
  if (plugin.exitCode !== null || plugin.signalCode !== null) return;
  const exited = new Promise((done) => plugin.once('exit', done));
  plugin.kill('SIGTERM');
  const timer = setTimeout(() => plugin.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:csi mounts: run it as root');
  const registry = await Distribution.start();
  const work = mkdtempSync(join(tmpdir(), 'oras-bench-csi-'));
  const socket = join(work, 'csi.sock');
  const pods = join(work, 'pods');
  const profile = cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', resolve(cpuProfileDir)] : [];
  const plugin = spawn(process.execPath, [...profile, bundle, 'csi', '--endpoint', `unix://${socket}`, '--node-id', 'bench', '--cache-dir', join(work, 'data'),
    '--kubelet-dir', work, '--drain-timeout', '0', '--metrics-port', String(await freePort())], { stdio: ['ignore', 'ignore', 'pipe'] });
  // The plugin's call log: how long each call took inside it, as its own clock saw.
  let log = '';
  plugin.stderr!.setEncoding('utf8').on('data', (chunk: string) => { log += chunk; });
  const publishTimes = (from: number) => log.slice(from).split('\n').filter((l) => l.includes('"NodePublishVolume"'))
    .map((l) => JSON.parse(l)).filter((e) => e.event === 'csi-call' && e.code === 'OK').map((e) => e.ms as number);
  await new Promise((r) => setTimeout(r, 1500));
  const Node = grpc.makeGenericClientConstructor(NodeService, 'Node');
  const node = new Node(`unix://${socket}`, grpc.credentials.createInsecure()) as any;
  const call = (method: string, body: object) => new Promise((ok, fail) => {
    node[method](body, (err: Error | null, res: unknown) => (err ? fail(err) : ok(res)));
  });
  const client = new RegistryClient(registry.host, { plainHttp: true });
  const publish = async (target: string, reference: string, namespace: string) => {
    const started = process.hrtime.bigint();
    await call('NodePublishVolume', {
      volume_id: target,
      target_path: target,
      volume_capability: capability,
      volume_context: { 'oras.artifact.reference': reference, 'oras.options.plainhttp': 'true', 'csi.storage.k8s.io/pod.namespace': namespace },
    });
    return Number(process.hrtime.bigint() - started) / 1e6;
  };
  try {
    mountUnrelated(join(work, 'unrelated'), unrelatedMounts);
    const src = join(work, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'model.bin'), randomFillSync(Buffer.alloc(64 * 1024 * 1024)));
    const ref = parseReference(`${registry.host}/bench/model:v1`);
    await push(client, ref, [{ path: 'model.bin' }], { cwd: src });

    // Cold: a new namespace each time forces a miss (the cache is per namespace).
    const cold: number[] = [];
    const raw: number[] = [];
    for (let i = 0; i < runs; i++) {
      cold.push(await publish(join(pods, `cold-${i}`), ref.text, `ns-${i}`));
      const pulled = await measure(process.execPath, [bundle, 'pull', '--plain-http', ref.text, '-o', join(work, `raw-${i}`)]);
      if (pulled.status !== 0) throw new Error(pulled.stderr);
      raw.push(pulled.ms);
      rmSync(join(work, `raw-${i}`), { recursive: true });
    }
    // Warm: the same artifact and namespace, already cached.
    const mountsAtWarm = mountPoints().length;
    const warm: number[] = [];
    const logBeforeWarm = log.length;
    for (let i = 0; i < 200; i++) warm.push(await publish(join(pods, `warm-${i}`), ref.text, 'ns-0'));
    await new Promise((r) => setTimeout(r, 100));
    const warmInside = publishTimes(logBeforeWarm);
    // 50 at once, cold.
    const started = Date.now();
    await Promise.all(Array.from({ length: 50 }, (_, i) => publish(join(pods, `burst-${i}`), ref.text, 'burst')));
    const burst = Date.now() - started;

    console.log(`\n${new Date().toISOString().slice(0, 10)}, 64 MiB artifact, distribution on loopback, medians of ${runs} runs, `
      + `${unrelatedMounts} unrelated mounts (${mountsAtWarm} in mountinfo when the warm publishes start)\n`);
    console.log('| measure | result |');
    console.log('|---|---|');
    console.log(`| warm publish p50 / p99 (200 publishes, ${unrelatedMounts} unrelated mounts), as a grpc-js client sees it | ${median(warm).toFixed(1)} ms / ${percentile(warm, 99).toFixed(1)} ms |`);
    console.log(`| the same publishes inside the plugin (its call log: request decoded to response sent) | ${median(warmInside).toFixed(1)} ms / ${percentile(warmInside, 99).toFixed(1)} ms |`);
    console.log(`| cold publish / raw pull | ${median(cold).toFixed(0)} ms / ${median(raw).toFixed(0)} ms = ${(median(cold) / median(raw)).toFixed(2)} |`);
    console.log(`| 50 concurrent cold publishes of one artifact | ${burst} ms in all |`);
  } finally {
    await stopPlugin(plugin);
    unmountUnder(work);
    node.close();
    client.close();
    await registry.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

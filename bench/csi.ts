// The CSI node plugin on real bind mounts (run as root): warm publish latency
// (p50, p99), cold publish time against a raw `oras-runtime pull` of the same
// artifact, and 50 concurrent publishes of one artifact.
//
//   npx projen bench:csi [runs]      (default 5)
import { spawn } from 'child_process';
import { randomFillSync } from 'crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
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

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:csi mounts: run it as root');
  const registry = await Distribution.start();
  const work = mkdtempSync(join(tmpdir(), 'oras-bench-csi-'));
  const socket = join(work, 'csi.sock');
  const plugin = spawn(process.execPath, [bundle, 'csi', '--endpoint', `unix://${socket}`, '--node-id', 'bench', '--cache-dir', join(work, 'data'),
    '--metrics-port', String(await freePort())], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1500));
  const Node = grpc.makeGenericClientConstructor(NodeService, 'Node');
  const node = new Node(`unix://${socket}`, grpc.credentials.createInsecure()) as any;
  const call = (method: string, body: object) => new Promise((ok, fail) => {
    node[method](body, (err: Error | null, res: unknown) => (err ? fail(err) : ok(res)));
  });
  const client = new RegistryClient(registry.host, { plainHttp: true });
  const targets: string[] = [];
  const publish = async (target: string, reference: string, namespace: string) => {
    targets.push(target);
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
    const src = join(work, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'model.bin'), randomFillSync(Buffer.alloc(64 * 1024 * 1024)));
    const ref = parseReference(`${registry.host}/bench/model:v1`);
    await push(client, ref, [{ path: 'model.bin' }], { cwd: src });

    // Cold: a new namespace each time forces a miss (the cache is per namespace).
    const cold: number[] = [];
    const raw: number[] = [];
    for (let i = 0; i < runs; i++) {
      cold.push(await publish(join(work, `cold-${i}`), ref.text, `ns-${i}`));
      const pulled = await measure(process.execPath, [bundle, 'pull', '--plain-http', ref.text, '-o', join(work, `raw-${i}`)]);
      if (pulled.status !== 0) throw new Error(pulled.stderr);
      raw.push(pulled.ms);
      rmSync(join(work, `raw-${i}`), { recursive: true });
    }
    // Warm: the same artifact and namespace, already cached.
    const warm: number[] = [];
    for (let i = 0; i < 200; i++) warm.push(await publish(join(work, `warm-${i}`), ref.text, 'ns-0'));
    // 50 at once, cold.
    const started = Date.now();
    await Promise.all(Array.from({ length: 50 }, (_, i) => publish(join(work, `burst-${i}`), ref.text, 'burst')));
    const burst = Date.now() - started;

    console.log(`\n${new Date().toISOString().slice(0, 10)}, 64 MiB artifact, distribution on loopback, medians of ${runs} runs\n`);
    console.log('| measure | result |');
    console.log('|---|---|');
    console.log(`| warm publish p50 / p99 (200 publishes) | ${median(warm).toFixed(1)} ms / ${percentile(warm, 99).toFixed(1)} ms |`);
    console.log(`| cold publish / raw pull | ${median(cold).toFixed(0)} ms / ${median(raw).toFixed(0)} ms = ${(median(cold) / median(raw)).toFixed(2)} |`);
    console.log(`| 50 concurrent cold publishes of one artifact | ${burst} ms in all |`);
  } finally {
    for (const target of targets) run('umount', [target]);
    plugin.kill('SIGTERM');
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

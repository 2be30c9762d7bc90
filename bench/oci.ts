// Benchmarks oras-runtime push and pull against the oras CLI on the same
// registry (Debian's distribution on loopback), in the same run, alternating
// the two tools. Prints medians of wall time and peak RSS, and the ratios.
//
//   npx projen bench:oci [runs]      (default 5 runs per case; BENCH_CASES=2 runs only the second case)
//
// Sources, outputs and the registry's storage are on tmpfs (/dev/shm) when there is one, or in
// BENCH_DIR: on this machine's ext4 (mounted with `discard`), creating 10,000 files took 0.5 s in one
// run and 3 s in the next, for both tools alike, which hid every difference between them.
import { spawnSync } from 'child_process';
import { randomFillSync, randomInt } from 'crypto';
import { accessSync, closeSync, constants, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'fs';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import { Distribution } from '../lib-tests/util/distribution';
import { measure, Measured, median } from '../lib-tests/util/measure';
import { requirePeer } from '../lib-tests/util/peers';

const root = resolve(__dirname, '..');
const bundle = join(root, 'runtime', 'build', 'oras-runtime.cjs');
const runs = Number(process.argv[2] ?? 5);

interface Case {
  readonly name: string;
  readonly items: string[];
  prepare(dir: string): void;
}

const CASES: Case[] = [
  {
    name: 'one 1 GiB file',
    items: ['big.bin'],
    prepare(dir) {
      const fd = openSync(join(dir, 'big.bin'), 'w');
      const chunk = Buffer.alloc(16 * 1024 * 1024);
      try {
        for (let i = 0; i < 64; i++) writeSync(fd, randomFillSync(chunk));
      } finally {
        closeSync(fd);
      }
    },
  },
  {
    name: '10,000 files of 1–7 KiB in 100 directories',
    items: ['tree'],
    prepare(dir) {
      // Text-like content (base64 of random bytes) compresses as logs and results do, about 3:4.
      for (let d = 0; d < 100; d++) {
        mkdirSync(join(dir, 'tree', `d${d}`), { recursive: true });
        for (let f = 0; f < 100; f++) {
          const size = 1024 + randomInt(6 * 1024 + 1);
          writeFileSync(join(dir, 'tree', `d${d}`, `f${f}.txt`), randomFillSync(Buffer.alloc(size)).toString('base64').slice(0, size));
        }
      }
    },
  },
];

/** BENCH_CASES=1,2 runs only those cases (1-based). */
const selected = process.env.BENCH_CASES?.split(',').map(Number);

interface Row {
  readonly case: string;
  readonly verb: string;
  readonly ours: { ms: number; peakMiB: number };
  readonly oras: { ms: number; peakMiB: number };
}

/** Writes back what earlier runs left dirty, so that no tool pays for another's writes. */
function settleDisk(): void {
  spawnSync('sync');
}

function check(result: Measured, what: string): Measured {
  if (result.status !== 0) throw new Error(`${what} failed (${result.status}): ${result.stderr}`);
  return result;
}

/** Where the files go: BENCH_DIR, else tmpfs if writable, else the temporary directory. */
function benchDir(): string {
  if (process.env.BENCH_DIR) return process.env.BENCH_DIR;
  try {
    accessSync('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

async function main(): Promise<void> {
  const oras = requirePeer('oras');
  const work = mkdtempSync(join(benchDir(), 'oras-bench-'));
  const storage = join(work, 'registry');
  mkdirSync(storage);
  const registry = await Distribution.start({ storageRoot: storage });
  const rows: Row[] = [];
  try {
    for (const [index, benchCase] of CASES.entries()) {
      if (selected && !selected.includes(index + 1)) continue;
      const src = join(work, `src${index}`);
      mkdirSync(src);
      benchCase.prepare(src);
      const samples = { push: { ours: [] as Measured[], oras: [] as Measured[] }, pull: { ours: [] as Measured[], oras: [] as Measured[] } };
      for (let run = 0; run < runs; run++) {
        // Distinct repositories per run, so that no blob is already there (HEAD skips uploads).
        const ourRef = `${registry.host}/bench/ours${index}-${run}:v1`;
        const theirRef = `${registry.host}/bench/oras${index}-${run}:v1`;
        const order: Array<'ours' | 'oras'> = run % 2 === 0 ? ['ours', 'oras'] : ['oras', 'ours'];
        for (const tool of order) {
          const ref = tool === 'ours' ? ourRef : theirRef;
          const args = ['push', '--plain-http', ref, ...benchCase.items];
          settleDisk();
          samples.push[tool].push(check(await measure(tool === 'ours' ? process.execPath : oras, tool === 'ours' ? [bundle, ...args] : args, { cwd: src }), `${tool} push`));
        }
        for (const tool of order) {
          // Both tools pull the same artifact: the one oras pushed, each into a new directory.
          const out = join(work, `out-${tool}-${run}`);
          mkdirSync(out);
          const args = ['pull', '--plain-http', theirRef, '-o', out];
          settleDisk();
          samples.pull[tool].push(check(await measure(tool === 'ours' ? process.execPath : oras, tool === 'ours' ? [bundle, ...args] : args), `${tool} pull`));
          // Outputs go at once: ten copies of 1 GiB would not fit in memory on tmpfs.
          rmSync(out, { recursive: true, force: true });
        }
      }
      for (const verb of ['push', 'pull'] as const) {
        const summary = (list: Measured[]) => ({ ms: median(list.map((m) => m.ms)), peakMiB: median(list.map((m) => m.peakMiB)) });
        rows.push({ case: benchCase.name, verb, ours: summary(samples[verb].ours), oras: summary(samples[verb].oras) });
      }
      rmSync(src, { recursive: true, force: true });
      settleDisk();
    }
  } finally {
    await registry.stop();
    rmSync(work, { recursive: true, force: true });
  }
  console.log(`\n${new Date().toISOString().slice(0, 10)}, medians of ${runs} runs, oras ${'v1.2.3'}, distribution 2.8 on loopback, files in ${work.replace(/\/oras-bench-.*/, '')}\n`);
  console.log('| case | verb | oras-runtime | oras | time ratio | peak RSS oras-runtime | peak RSS oras |');
  console.log('|---|---|---|---|---|---|---|');
  for (const row of rows) {
    console.log(`| ${row.case} | ${row.verb} | ${(row.ours.ms / 1000).toFixed(2)} s | ${(row.oras.ms / 1000).toFixed(2)} s | `
      + `${(row.ours.ms / row.oras.ms).toFixed(2)} | ${row.ours.peakMiB.toFixed(0)} MiB | ${row.oras.peakMiB.toFixed(0)} MiB |`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

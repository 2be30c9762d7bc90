import { randomBytes } from 'crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { stringify } from 'yaml';
import { Reporter, SilentReporter } from '../../../runtime/oci/progress';
import { push } from '../../../runtime/oci/push';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { prune } from '../../../runtime/retention/prune';
import { memoTag } from '../../../runtime/step/memo';
import { PROVENANCE } from '../../../src/injection';
import { Distribution } from '../../util/distribution';
import { describeWithPeers, requirePeer, run } from '../../util/peers';

const DAY = 24 * 3600 * 1000;
const NOW = new Date('2026-12-02T12:00:00Z');

function recorder(): Reporter & { events: Array<[string, Record<string, unknown>]> } {
  const events: Array<[string, Record<string, unknown>]> = [];
  const silent = new SilentReporter();
  return { events, event: (name, fields) => events.push([name, fields]), track: () => silent.track() };
}

/** Bytes under a directory, as `du` counts them on disk. */
function diskBytes(dir: string): number {
  return Number(run('du', ['-sb', dir]).stdout.split('\t')[0]);
}

describeWithPeers(['docker-registry', 'oras'], 'prune and the registry\'s garbage collection, on a real registry', () => {
  let storage: string;
  let scratch: string;
  let registry: Distribution;
  const contents = new Map<string, Buffer>();

  const client = () => new RegistryClient(registry.host, { plainHttp: true, retryBaseMs: 5 });

  /** One output of run `run` of workflow `workflow`: 256 KiB of random bytes, created `daysAgo` before NOW. */
  async function output(workflow: string, step: string, runId: string, daysAgo: number, extraTags: string[] = []): Promise<string> {
    const dir = mkdtempSync(join(scratch, 'out-'));
    const data = randomBytes(256 * 1024);
    writeFileSync(join(dir, 'data.bin'), data);
    const reference = parseReference(`${registry.host}/${workflow}/${step}:${runId}-output`);
    contents.set(reference.text, data);
    const c = client();
    try {
      const created = new Date(NOW.getTime() - daysAgo * DAY).toISOString().replace(/\.\d{3}Z$/, 'Z');
      const annotations = { $manifest: { [PROVENANCE.WORKFLOW]: workflow, [PROVENANCE.RUN_ID]: runId, 'org.opencontainers.image.created': created } };
      return (await push(c, reference, [{ path: 'data.bin' }], { cwd: dir, annotations, alsoTags: extraTags })).digest;
    } finally {
      c.close();
    }
  }

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'oras-prune-'));
    storage = join(scratch, 'storage');
    run('mkdir', ['-p', storage]);
    registry = await Distribution.start({ storageRoot: storage, env: { REGISTRY_STORAGE_DELETE_ENABLED: 'true' } });
  });
  afterAll(async () => {
    await registry?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  test('keep the last 2 runs per workflow: older runs go, hand-made tags and foreign artifacts stay, GC frees the disk, kept runs pull byte for byte', async () => {
    // Workflow "etl": four runs of two steps; r1 also tagged "golden" by hand, r4 holds a memo tag.
    for (const [runId, age] of [['r1', 40], ['r2', 30], ['r3', 20], ['r4', 10]] as const) {
      await output('etl', 'extract', runId, age, runId === 'r1' ? ['golden'] : []);
      await output('etl', 'load', runId, age, runId === 'r4' ? [memoTag('f'.repeat(64))] : []);
    }
    // Workflow "train": one old run, kept by --keep-last 2 per workflow.
    await output('train', 'fit', 't1', 90);
    // An artifact no workflow made.
    const foreign = mkdtempSync(join(scratch, 'model-'));
    writeFileSync(join(foreign, 'weights.bin'), randomBytes(128 * 1024));
    const c = client();
    await push(c, parseReference(`${registry.host}/models/demo:v1`), [{ path: 'weights.bin' }], { cwd: foreign }).finally(() => c.close());

    // A dry run deletes nothing.
    const dry = client();
    const planned = await prune(dry, { keepLast: 2, dryRun: true, now: NOW, reporter: new SilentReporter() }).finally(() => dry.close());
    expect(planned.deleted).toHaveLength(3);
    const before = diskBytes(storage);

    const reporter = recorder();
    const pruner = client();
    const result = await prune(pruner, { keepLast: 2, now: NOW, reporter }).finally(() => pruner.close());
    expect(result.runs.map((r) => `${r.workflow}/${r.run}:${r.kept ? 'kept' : 'expired'}`))
      .toEqual(['etl/r4:kept', 'etl/r3:kept', 'etl/r2:expired', 'etl/r1:expired', 'train/t1:kept']);
    expect(result.deleted.map((d) => d.split('@')[0]).sort()).toEqual(['etl/extract', 'etl/load', 'etl/load']);
    expect(reporter.events.find(([name]) => name === 'kept')?.[1].message).toBe('run r1 expired, but tags no run gives keep it: golden');

    const lister = client();
    try {
      expect((await lister.tags('etl/extract')).sort()).toEqual(['golden', 'r1-output', 'r3-output', 'r4-output']);
      expect((await lister.tags('etl/load')).sort()).toEqual([memoTag('f'.repeat(64)), 'r3-output', 'r4-output']);
      expect(await lister.tags('models/demo')).toEqual(['v1']);
    } finally {
      lister.close();
    }
    // Deleting manifests frees nothing yet: the blobs stay until the garbage collection.
    expect(diskBytes(storage)).toBeGreaterThan(before - 64 * 1024);

    // The registry's own garbage collection, while the registry is stopped (as the init container runs it).
    await registry.stop();
    const config = join(scratch, 'gc.yml');
    writeFileSync(config, stringify({ version: '0.1', storage: { filesystem: { rootdirectory: storage } } }));
    const collected = run(requirePeer('docker-registry'), ['garbage-collect', config]);
    expect(collected.status).toBe(0);
    const after = diskBytes(storage);
    // Three outputs of 256 KiB each went.
    expect(before - after).toBeGreaterThan(3 * 256 * 1024);
    registry = await Distribution.start({ storageRoot: storage, env: { REGISTRY_STORAGE_DELETE_ENABLED: 'true' } });

    // What stays pulls byte for byte with the oras CLI.
    const gone = ['etl/extract:r2-output', 'etl/load:r2-output', 'etl/load:r1-output'];
    expect(contents.size).toBe(9);
    for (const [reference, data] of contents) {
      const kept = !gone.includes(reference.replace(/^[^/]+\//, ''));
      const out = mkdtempSync(join(scratch, 'pull-'));
      const pulled = run(requirePeer('oras'), ['pull', '--plain-http', reference.replace(/^[^/]+/, registry.host), '-o', out]);
      if (kept) {
        expect(pulled.status).toBe(0);
        expect(readFileSync(join(out, 'data.bin')).equals(data)).toBe(true);
      } else {
        expect(pulled.status).not.toBe(0);
      }
    }
  });

  test('no policy, no pruning: the error names the flags', async () => {
    const c = client();
    await expect(prune(c, { reporter: new SilentReporter() })).rejects.toThrow(/needs --keep-last, --keep-for or both/);
    c.close();
  });

  test('--keep-for keeps what is younger; either policy keeps a run', async () => {
    const c = client();
    try {
      const byAge = await prune(c, { keepForMs: 25 * DAY, dryRun: true, now: NOW, reporter: new SilentReporter() });
      expect(byAge.runs.filter((r) => r.kept).map((r) => r.run)).toEqual(['r4', 'r3']);
      const either = await prune(c, { keepForMs: 25 * DAY, keepLast: 1, dryRun: true, now: NOW, reporter: new SilentReporter() });
      expect(either.runs.filter((r) => r.kept).map((r) => `${r.workflow}/${r.run}`)).toEqual(['etl/r4', 'etl/r3', 'train/t1']);
    } finally {
      c.close();
    }
  });
});

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { SilentReporter } from '../../../runtime/oci/progress';
import { push } from '../../../runtime/oci/push';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { contentDigest, memoKey, memoTag } from '../../../runtime/step/memo';
import { pullInputs } from '../../../runtime/step/pull-inputs';
import { pushOutput } from '../../../runtime/step/push-output';
import { PROVENANCE } from '../../../src/injection';
import { StateFile } from '../../../src/wrapper';
import { Distribution } from '../../util/distribution';
import { describeWithPeers } from '../../util/peers';

const DEFINITION = 'a'.repeat(64);

describeWithPeers(['docker-registry'], 'memoization: a step whose key has an output reuses it, on a real registry', () => {
  let registry: Distribution;
  let scratch: string;
  let requests: string[];
  beforeAll(async () => { registry = await Distribution.start(); });
  afterAll(async () => registry.stop());
  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), 'oras-memo-'));
    requests = [];
  });
  afterEach(() => rmSync(scratch, { recursive: true, force: true }));

  /** A client that records each request it makes (method and path). */
  const clientFor = () => {
    const client = new RegistryClient(registry.host, { plainHttp: true, retryBaseMs: 5 });
    const call = (client as any).call.bind(client);
    (client as any).call = (method: string, url: URL, options: unknown) => {
      requests.push(`${method} ${url.pathname}`);
      return call(method, url, options);
    };
    return client;
  };

  async function pushInput(repository: string, tag: string, text: string): Promise<string> {
    const dir = mkdtempSync(join(scratch, 'src-'));
    writeFileSync(join(dir, 'data.txt'), text);
    const client = clientFor();
    try {
      return (await push(client, parseReference(`${registry.host}/${repository}:${tag}`), [{ path: 'data.txt' }], { cwd: dir })).digest;
    } finally {
      client.close();
    }
  }

  /** One step run: oras-pull, then (unless memoized) a command that writes `result`, then oras-push. */
  async function runStep(run: string, input: string, result: string, exitCode = 0) {
    const state = join(scratch, `state-${run}`);
    const out = join(scratch, `out-${run}`);
    mkdirSync(out, { recursive: true });
    const to = `${registry.host}/wf/step:${run}-output`;
    const annotations = { [PROVENANCE.STEP]: 'wf-step', [PROVENANCE.RUN_ID]: run };
    const pulled = await pullInputs({
      state,
      timeoutMs: 5000,
      inputs: [{ reference: input, dir: join(scratch, `in-${run}`) }],
      clientFor,
      reporter: new SilentReporter(),
      memo: { definition: DEFINITION, to, annotations },
    });
    let ran = false;
    if (pulled !== 'memoized') {
      ran = true;
      writeFileSync(join(out, 'result.txt'), result);
      writeFileSync(join(state, StateFile.EXIT_CODE), `${exitCode}\n`);
    }
    const code = await pushOutput({
      state,
      dirs: [out],
      to,
      failureTo: `${to}-failed`,
      unpack: true,
      annotations,
      startTimeoutMs: 5000,
      clientFor,
      reporter: new SilentReporter(),
      memoize: true,
    });
    expect(code).toBe(0);
    const client = clientFor();
    try {
      const { manifest, descriptor } = await client.fetchManifest('wf/step', `${run}-output`).catch(() => ({ manifest: undefined, descriptor: undefined }));
      return { ran, state, manifest, digest: descriptor?.digest };
    } finally {
      client.close();
    }
  }

  test('the second run with the same input runs nothing, moves no blob, and names what it reuses', async () => {
    const input = `${registry.host}/wf/source:r1-output`;
    await pushInput('wf/source', 'r1-output', 'numbers');
    const first = await runStep('r1', input, 'first result');
    expect(first.ran).toBe(true);
    // The input's manifest, fetched for the key, is the one the pull uses: one GET.
    expect(requests.filter((r) => r.startsWith('GET /v2/wf/source/manifests/'))).toHaveLength(1);
    expect(first.manifest?.annotations?.[PROVENANCE.MEMOIZED_FROM]).toBeUndefined();
    const key = first.manifest!.annotations![PROVENANCE.MEMO_KEY];
    expect(key).toMatch(/^[0-9a-f]{64}$/);

    requests = [];
    const second = await runStep('r2', input, 'second result');
    expect(second.ran).toBe(false);
    expect(readFileSync(join(second.state, StateFile.MEMOIZED), 'utf8')).toBe(`${registry.host}/wf/step@${first.digest}\n`);
    expect(existsSync(join(second.state, StateFile.INPUTS))).toBe(false);
    // Same layers (the first run's result), this run's provenance.
    expect(second.manifest!.layers).toEqual(first.manifest!.layers);
    expect(second.manifest!.annotations).toMatchObject({
      [PROVENANCE.MEMOIZED_FROM]: `${registry.host}/wf/step@${first.digest}`,
      [PROVENANCE.RUN_ID]: 'r2',
      [PROVENANCE.MEMO_KEY]: key,
    });
    expect(contentDigest(second.manifest!)).toBe(contentDigest(first.manifest!));
    // Manifests only: no blob is pulled or uploaded (oras-push's warm-up asks for one with HEAD).
    expect(requests.filter((r) => r.includes('/blobs/') && !r.startsWith('HEAD '))).toEqual([]);
    expect(requests.filter((r) => r.startsWith('PUT '))).toEqual(['PUT /v2/wf/step/manifests/r2-output', `PUT /v2/wf/step/manifests/${memoTag(key)}`]);
    // The memo tag follows the newest run, so retention of old runs keeps it.
    const client = clientFor();
    const memo = await client.resolve('wf/step', memoTag(key)).finally(() => client.close());
    expect(memo.digest).toBe(second.digest);

    // A third run memoizes from the original, not from the second.
    const third = await runStep('r3', input, 'third result');
    expect(third.manifest!.annotations![PROVENANCE.MEMOIZED_FROM]).toBe(`${registry.host}/wf/step@${first.digest}`);
  });

  test('a changed input runs the command again', async () => {
    await pushInput('wf/changing', 'r1-output', 'version one');
    await pushInput('wf/changing', 'r2-output', 'version two');
    const first = await runStep('c1', `${registry.host}/wf/changing:r1-output`, 'from one');
    const second = await runStep('c2', `${registry.host}/wf/changing:r2-output`, 'from two');
    expect([first.ran, second.ran]).toEqual([true, true]);
    expect(second.manifest!.annotations![PROVENANCE.MEMO_KEY]).not.toBe(first.manifest!.annotations![PROVENANCE.MEMO_KEY]);
  });

  test('a failed command is never memoized', async () => {
    await pushInput('wf/flaky', 'f1-output', 'input');
    const failed = await runStep('f1', `${registry.host}/wf/flaky:f1-output`, 'partial', 3);
    expect(failed.manifest).toBeUndefined();
    const again = await runStep('f2', `${registry.host}/wf/flaky:f1-output`, 'complete');
    expect(again.ran).toBe(true);
  });

  test('a registry that does not answer yet (applied with the workflow) is waited for, not taken for a failure', async () => {
    const state = join(scratch, 'state');
    let refused = 0;
    const starting = () => {
      const client = clientFor();
      const fetchManifest = client.fetchManifest.bind(client);
      client.fetchManifest = (...args: Parameters<RegistryClient['fetchManifest']>) => {
        if (refused++ < 2) return Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
        return fetchManifest(...args);
      };
      return client;
    };
    const result = await pullInputs({
      state,
      timeoutMs: 5000,
      inputs: [],
      clientFor: starting,
      reporter: new SilentReporter(),
      memo: { definition: 'b'.repeat(64), to: `${registry.host}/wf/starting:s1-output`, annotations: {} },
    });
    expect(result).toEqual([]);
    expect(refused).toBe(3);
    expect(memoTag(JSON.parse(readFileSync(join(state, StateFile.MEMO), 'utf8')).key)).toMatch(/^memo-[0-9a-f]{64}$/);
  });

  test('the key is the definition and the inputs\' content, in order', () => {
    const manifest = { schemaVersion: 2 as const, layers: [], annotations: { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' } };
    const later = { ...manifest, annotations: { 'org.opencontainers.image.created': '2026-12-01T00:00:00Z' } };
    expect(contentDigest(later)).toBe(contentDigest(manifest));
    expect(memoKey(DEFINITION, ['sha256:1', 'sha256:2'])).not.toBe(memoKey(DEFINITION, ['sha256:2', 'sha256:1']));
    expect(memoKey(DEFINITION, ['sha256:1'])).not.toBe(memoKey('b'.repeat(64), ['sha256:1']));
  });
});

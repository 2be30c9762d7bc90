import { spawn } from 'child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Reporter, SilentReporter } from '../../../runtime/oci/progress';
import { pull } from '../../../runtime/oci/pull';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { awaitOutcome, awaitOutcomes, OutputConflict, pushOutput, PushOutputOptions } from '../../../runtime/step/push-output';
import { StateFile, wrapperFile } from '../../../src/wrapper';
import { Distribution } from '../../util/distribution';
import { FaultProxy } from '../../util/fault-proxy';
import { describeWithPeers } from '../../util/peers';

/** Events a reporter received, by name. */
function recorder(): Reporter & { events: Array<[string, Record<string, unknown>]> } {
  const events: Array<[string, Record<string, unknown>]> = [];
  const silent = new SilentReporter();
  return { events, event: (name, fields) => events.push([name, fields]), track: () => silent.track() };
}

describe('step push: waiting for the outcome', () => {
  let state: string;
  beforeEach(() => { state = mkdtempSync(join(tmpdir(), 'oras-push-')); });
  afterEach(() => rmSync(state, { recursive: true, force: true }));
  const write = (file: string, text: string) => writeFileSync(join(state, file), text);

  test('the exit code is seen as it is written (inotify), not at the next poll', async () => {
    write(StateFile.WRAPPER_PID, `${process.pid}\n`);
    let writtenAt = 0;
    // Just after a poll: polling alone would notice it about 200 ms later.
    setTimeout(() => { write(StateFile.EXIT_CODE, '0\n'); writtenAt = Date.now(); }, 230);
    expect(await awaitOutcome(state, 5000)).toEqual({ exitCode: 0 });
    expect(Date.now() - writtenAt).toBeLessThan(100);
  });

  test('inputs that could not be pulled: the command did not run, and nothing is pushed', async () => {
    setTimeout(() => write(StateFile.PULL_FAILED, 'input r/a:1 is not there: waiting timed out after 10 s\n'), 50);
    expect(await awaitOutcome(state, 5000)).toEqual({ notRun: 'input r/a:1 is not there: waiting timed out after 10 s' });
    const reporter = recorder();
    const clientFor = () => { throw new Error('no registry is needed'); };
    const code = await pushOutput({ state, dirs: [state], to: 'r/o:1', failureTo: 'r/o:1-failed', unpack: true, annotations: {}, startTimeoutMs: 5000, clientFor, reporter });
    expect(code).toBe(0);
    expect(reporter.events).toEqual([['not-pushed', {
      message: 'the command did not run: input r/a:1 is not there: waiting timed out after 10 s; nothing is pushed',
    }]]);
  });

  test('a reason still being written is read only once its line is whole', async () => {
    write(StateFile.WRAPPER_PID, `${process.pid}\n`);
    write(StateFile.PULL_FAILED, 'input r/a:1 is not');
    setTimeout(() => write(StateFile.PULL_FAILED, 'input r/a:1 is not there\n'), 300);
    expect(await awaitOutcome(state, 5000)).toEqual({ notRun: 'input r/a:1 is not there' });
  });

  test('a wrapper that ends without an exit code ends the wait', async () => {
    const wrapper = spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
    write(StateFile.WRAPPER_PID, `${wrapper.pid}\n`);
    setTimeout(() => wrapper.kill('SIGKILL'), 100);
    expect(await awaitOutcome(state, 5000)).toEqual({ died: expect.stringMatching(/ended without reporting an exit code/) });
  });

  test('a wrapper that writes its exit code and ends at once: the code counts', async () => {
    write(StateFile.WRAPPER_PID, '999999999\n');
    write(StateFile.EXIT_CODE, '3\n');
    expect(await awaitOutcome(state, 5000)).toEqual({ exitCode: 3 });
  });

  test('no wrapper within the start timeout', async () => {
    expect(await awaitOutcome(state, 300)).toEqual({ died: 'the app container did not start within 0 s' });
  });

  test('SIGTERM (the abort signal) ends the wait', async () => {
    write(StateFile.WRAPPER_PID, `${process.pid}\n`);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('SIGTERM received')), 100);
    await expect(awaitOutcome(state, 5000, controller.signal)).rejects.toThrow('SIGTERM received');
  });
});

describe('step push: several app containers', () => {
  let state: string;
  beforeEach(() => { state = mkdtempSync(join(tmpdir(), 'oras-push-')); });
  afterEach(() => rmSync(state, { recursive: true, force: true }));
  const write = (file: string, text: string) => writeFileSync(join(state, file), text);
  const ended = (id: string, code: number) => {
    write(wrapperFile(StateFile.WRAPPER_PID, id), '999999999\n');
    write(wrapperFile(StateFile.EXIT_CODE, id), `${code}\n`);
  };

  test('it waits for every one; the first non-zero exit code counts', async () => {
    ended('a', 0);
    setTimeout(() => ended('b', 3), 100);
    expect(await awaitOutcomes(state, 5000, ['a', 'b'])).toEqual({ exitCode: 3 });
  });

  test('an output one of them could not copy out: nothing is pushed, and the reason names the container', async () => {
    ended('a', 0);
    write(wrapperFile(StateFile.OUTPUT_FAILED, 'b'), 'the output path "x.txt" does not exist in /work after the command\n');
    ended('b', 1);
    expect(await awaitOutcomes(state, 5000, ['a', 'b'])).toEqual({ exitCode: 1, outputFailed: 'container b: the output path "x.txt" does not exist in /work after the command' });
    ended('b', 0);
    const reporter = recorder();
    const clientFor = () => { throw new Error('no registry is needed'); };
    expect(await pushOutput({ state, dirs: [state], launchers: ['a', 'b'], to: 'r/o:1', unpack: true, annotations: {}, startTimeoutMs: 5000, clientFor, reporter })).toBe(1);
    expect(reporter.events).toEqual([['not-pushed', { exitCode: 0, message: 'container b: the output path "x.txt" does not exist in /work after the command; nothing is pushed' }]]);
  });
});

describeWithPeers(['docker-registry'], 'step push: the outputs of several app containers', () => {
  let registry: Distribution;
  let scratch: string;
  beforeAll(async () => { registry = await Distribution.start(); });
  afterAll(async () => registry.stop());
  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), 'oras-push-'));
    mkdirSync(join(scratch, 'state'));
    for (const id of ['a', 'b']) {
      mkdirSync(join(scratch, id, 'results'), { recursive: true });
      writeFileSync(join(scratch, 'state', wrapperFile(StateFile.EXIT_CODE, id)), '0\n');
    }
    writeFileSync(join(scratch, 'a', 'results', 'one.txt'), 'one');
    writeFileSync(join(scratch, 'b', 'results', 'two.txt'), 'two');
    writeFileSync(join(scratch, 'b', 'b.txt'), 'b');
  });
  afterEach(() => rmSync(scratch, { recursive: true, force: true }));

  const push = (tag: string) => pushOutput({
    state: join(scratch, 'state'),
    dirs: [join(scratch, 'a'), join(scratch, 'b')],
    launchers: ['a', 'b'],
    to: `${registry.host}/step/merged:${tag}`,
    unpack: true,
    annotations: {},
    startTimeoutMs: 5000,
    clientFor: (ref) => new RegistryClient(ref.registry, { plainHttp: true }),
    reporter: new SilentReporter(),
  });

  test('are merged into one artifact: directories join, files keep their places', async () => {
    expect(await push('v1')).toBe(0);
    const out = join(scratch, 'pulled');
    const client = new RegistryClient(registry.host, { plainHttp: true });
    try {
      await pull(client, parseReference(`${registry.host}/step/merged:v1`), out);
    } finally {
      client.close();
    }
    expect((readdirSync(out, { recursive: true }) as string[]).sort()).toEqual(['b.txt', 'results', 'results/one.txt', 'results/two.txt']);
    expect(readFileSync(join(out, 'results', 'two.txt'), 'utf8')).toBe('two');
  });

  test('a file that two of them wrote is an OutputConflict naming it, and nothing is pushed', async () => {
    writeFileSync(join(scratch, 'b', 'results', 'one.txt'), 'another one');
    await expect(push('v2')).rejects.toEqual(new OutputConflict('results/one.txt'));
    const client = new RegistryClient(registry.host, { plainHttp: true });
    try {
      await expect(client.resolve('step/merged', 'v2')).rejects.toThrow();
    } finally {
      client.close();
    }
  });
});

describeWithPeers(['docker-registry'], 'step push: a registry that is still starting', () => {
  let registry: Distribution;
  let proxy: FaultProxy;
  let scratch: string;
  beforeAll(async () => { registry = await Distribution.start(); });
  afterAll(async () => registry.stop());
  beforeEach(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'oras-push-'));
    mkdirSync(join(scratch, 'state'));
    mkdirSync(join(scratch, 'out'));
    writeFileSync(join(scratch, 'out', 'a.txt'), 'alpha');
    writeFileSync(join(scratch, 'state', StateFile.EXIT_CODE), '0\n');
  });
  afterEach(async () => {
    await proxy.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  /** Pushes through a proxy that drops every connection for `downMs`, as a Service without endpoints refuses them. */
  async function pushWhileDown(downMs: number, options: Partial<PushOutputOptions> = {}) {
    const upAt = Date.now() + downMs;
    proxy = await FaultProxy.start(registry.host, () => (Date.now() < upAt ? { kind: 'drop' } : undefined));
    const reporter = recorder();
    const run = pushOutput({
      state: join(scratch, 'state'),
      dirs: [join(scratch, 'out')],
      to: `${proxy.host}/step/out:v1`,
      unpack: true,
      annotations: {},
      startTimeoutMs: 5000,
      clientFor: (ref) => new RegistryClient(ref.registry, { plainHttp: true, retryBaseMs: 5 }),
      reporter,
      ...options,
    });
    return { reporter, run };
  }

  test('it waits for the registry beyond the client\'s own retries, then pushes', async () => {
    const { reporter, run } = await pushWhileDown(3000);
    expect(await run).toBe(0);
    expect(reporter.events.some(([name, fields]) => name === 'waiting' && /ECONNRESET|socket hang up/.test(String(fields.message)))).toBe(true);
    const client = new RegistryClient(registry.host, { plainHttp: true });
    const ref = parseReference(`${registry.host}/step/out:v1`);
    const resolved = client.resolve(ref.repository, ref.manifestReference).finally(() => client.close());
    await expect(resolved).resolves.toMatchObject({ mediaType: expect.any(String) });
  });

  /** Leaves the command running (this process stands for the wrapper) until `end()` writes its exit code. */
  function commandRunning(): { end: () => void } {
    const stateDir = join(scratch, 'state');
    rmSync(join(stateDir, StateFile.EXIT_CODE));
    writeFileSync(join(stateDir, StateFile.WRAPPER_PID), `${process.pid}\n`);
    return { end: () => writeFileSync(join(stateDir, StateFile.EXIT_CODE), '0\n') };
  }

  test('the registry is reached while the command runs, so the push after it starts on a warm connection', async () => {
    const command = commandRunning();
    const { run } = await pushWhileDown(0);
    const blobCheck = '/v2/step/out/blobs/sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';
    const deadline = Date.now() + 5000;
    while (!proxy.requests.some((r) => r.method === 'HEAD' && r.path === blobCheck) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(proxy.requests.map((r) => `${r.method} ${r.path}`)).toEqual([`HEAD ${blobCheck}`]);
    command.end();
    expect(await run).toBe(0);
    expect(proxy.requests.filter((r) => r.method === 'PUT' && r.path.startsWith('/v2/step/out/manifests/'))).toHaveLength(1);
  });

  test('a check that gave up while the command ran does not fail the push: the registry gets a wait of its own', async () => {
    const command = commandRunning();
    const { run } = await pushWhileDown(1500, { registryWaitMs: 1000 });
    setTimeout(() => command.end(), 2000);
    expect(await run).toBe(0);
  });

  test('a registry that never answers fails the push at the deadline, saying so', async () => {
    const { run } = await pushWhileDown(60_000, { registryWaitMs: 1000 });
    await expect(run).rejects.toThrow(/^the registry of 127\.0\.0\.1:\d+\/step\/out:v1 does not answer: waiting timed out after 1(\.0)? s; the last answer was: /);
  });
});

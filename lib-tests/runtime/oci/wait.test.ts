import { CancelledError, TimeoutError } from '../../../runtime/oci/errors';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { waitFor } from '../../../runtime/oci/wait';
import { RogueRegistry } from '../../util/rogue-registry';

describe('waitFor', () => {
  let rogue: RogueRegistry;
  let client: RegistryClient;
  beforeAll(async () => { rogue = await RogueRegistry.start(); });
  afterAll(async () => rogue.stop());
  beforeEach(() => { client = new RegistryClient(rogue.host, { plainHttp: true, retryBaseMs: 5 }); });
  afterEach(() => client.close());
  const resolve = (tag: string) => (signal: AbortSignal) => client.resolve('wait', tag, { signal }).then((d) => d.digest);

  test('returns once the artifact appears', async () => {
    const waiting = waitFor(resolve('later'), { timeoutMs: 5000, maxDelayMs: 50 });
    setTimeout(() => rogue.manifest('wait', { schemaVersion: 2, layers: [] }, 'later'), 200);
    expect(await waiting).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  test('at the deadline a request that hangs is cut short, and the error quotes the last answer', async () => {
    const messages: string[] = [];
    const waiting = waitFor(resolve('stuck'), { timeoutMs: 800, maxDelayMs: 50, onRetry: (m) => messages.push(m) });
    // Not there at first; then the registry stops answering.
    setTimeout(() => rogue.manifest('wait', { schemaVersion: 2, layers: [{}] }, 'stuck', { kind: 'hang' }), 200);
    const started = Date.now();
    const error = await waiting.then(() => undefined, (err: Error) => err);
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error?.message).toMatch(/^waiting timed out after 0\.8 s; the last answer was: HEAD http:\/\/127\.0\.0\.1:\d+\/v2\/wait\/manifests\/stuck: 404 NOT_FOUND/);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(messages.length).toBeGreaterThan(0);
  });

  test('a signal stops the wait with its reason', async () => {
    const controller = new AbortController();
    const reason = new CancelledError('SIGTERM received', 'SIGTERM');
    const waiting = waitFor(resolve('never'), { timeoutMs: 60_000, signal: controller.signal });
    setTimeout(() => controller.abort(reason), 100);
    await expect(waiting).rejects.toBe(reason);
  });
});

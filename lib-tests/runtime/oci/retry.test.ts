import { AuthError, CancelledError, ContentMismatchError, LimitError, RegistryError, StalledError, TimeoutError, TransportError } from '../../../runtime/oci/errors';
import { isTransient, retry } from '../../../runtime/oci/retry';

const url = new URL('http://registry.test/v2/a/blobs/sha256:0');
const mismatch = (size: number) => new ContentMismatchError('blob', { digest: 'sha256:0', size: 10 }, { size });

describe('isTransient: one answer to "may a retry succeed?", by class and fields', () => {
  test.each<[string, unknown, boolean]>([
    ['a connection reset', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), true],
    ['a transport error around a refused connection', new TransportError('GET', url, Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })), true],
    ['a stall', new StalledError('slow'), true],
    ['503 and 429', new RegistryError('GET', url, 503, 'UNAVAILABLE', ''), true],
    ['429', new RegistryError('GET', url, 429, 'TOOMANYREQUESTS', ''), true],
    ['a body cut short', mismatch(5), true],
    ['404', new RegistryError('GET', url, 404, 'NOT_FOUND', ''), false],
    ['401', new AuthError('registry.test', 'GET', url, 401, 'UNAUTHORIZED', ''), false],
    ['a body longer than declared', mismatch(11), false],
    ['a wrong digest', new ContentMismatchError('blob', { digest: 'sha256:0', size: 10 }, { digest: 'sha256:1', size: 10 }), false],
    ['a deadline', new TimeoutError('pull', 1000), false],
    ['a cancellation', new CancelledError('SIGTERM'), false],
    ['a limit', new LimitError('x', 'bytes', 1, 'raise it'), false],
    ['a plain error', new Error('expected 13 bytes, got 13'), false],
  ])('%s: %s', (_what, err, transient) => {
    expect(isTransient(err)).toBe(transient);
  });
});

describe('retry', () => {
  const policy = { attempts: 3, baseMs: 1, maxMs: 5 };

  test('retries transient failures up to the attempts, and no others', async () => {
    let calls = 0;
    await expect(retry(async () => { calls++; throw new StalledError('slow'); }, { policy })).rejects.toBeInstanceOf(StalledError);
    expect(calls).toBe(3);
    calls = 0;
    await expect(retry(async () => { calls++; throw mismatch(11); }, { policy })).rejects.toBeInstanceOf(ContentMismatchError);
    expect(calls).toBe(1);
  });

  test('a signal ends the waiting between attempts with its reason', async () => {
    const controller = new AbortController();
    const reason = new CancelledError('stop');
    const started = Date.now();
    const pending = retry(async () => { throw new RegistryError('GET', url, 503, 'UNAVAILABLE', '', 60_000); }, { policy, signal: controller.signal });
    setTimeout(() => controller.abort(reason), 50);
    await expect(pending).rejects.toBe(reason);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

import { closest } from '../../../runtime/cli/suggest';

describe('closest: the flag or command that was meant', () => {
  const flags = ['--plain-http', '--insecure', '--output', '-o', '--concurrency', '--ca-file', '--registry-config'];

  test.each([
    ['--plain-htp', '--plain-http'],
    ['--insecur', '--insecure'],
    ['--concurency', '--concurrency'],
    ['--plain', '--plain-http'],
    ['--registry-conf', '--registry-config'],
    ['--cafile', '--ca-file'],
  ])('%s: %s', (typed, meant) => {
    expect(closest(typed, flags)).toBe(meant);
  });

  test.each(['--bogus', '--username', '-x'])('%s is like nothing here: no suggestion', (typed) => {
    expect(closest(typed, flags)).toBeUndefined();
  });

  test('commands', () => {
    expect(closest('psuh', ['push', 'pull', 'resolve', 'wait', 'step'])).toBe('push');
    expect(closest('pul', ['push', 'pull', 'resolve', 'wait', 'step'])).toBe('pull');
    expect(closest('deploy', ['push', 'pull', 'resolve', 'wait', 'step'])).toBeUndefined();
  });
});

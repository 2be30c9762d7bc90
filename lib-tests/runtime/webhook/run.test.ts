import { spawnSync } from 'child_process';
import { join } from 'path';

const bundle = join(__dirname, '..', '..', '..', 'runtime', 'build', 'oras-runtime.cjs');

describe('oras-runtime webhook flags', () => {
  test.each([
    ['0s', /--input-timeout must be from 1s to 31536000s \(365 days\), not "0s"/],
    ['9000h', /--input-timeout must be from 1s to 31536000s \(365 days\), not "9000h"/],
  ])('a --input-timeout of %s is a usage error at start, not a denial of every pod', (value, message) => {
    const result = spawnSync(process.execPath, [bundle, 'webhook', '--tls-cert', '/nonexistent', '--tls-key', '/nonexistent', '--input-timeout', value], { encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(message);
  });
});

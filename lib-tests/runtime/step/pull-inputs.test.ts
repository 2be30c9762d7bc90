import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { EnvironmentCredentials } from '../../../runtime/oci/auth/credentials';
import { AuthError, TimeoutError } from '../../../runtime/oci/errors';
import { SilentReporter } from '../../../runtime/oci/progress';
import { push } from '../../../runtime/oci/push';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { pullInputs } from '../../../runtime/step/pull-inputs';
import { StateFile } from '../../../src/wrapper';
import { Distribution } from '../../util/distribution';
import { describeWithPeers } from '../../util/peers';

describeWithPeers(['docker-registry', 'htpasswd'], 'step pull: what oras-pull leaves for the wrapper, and says when an input cannot be had', () => {
  let registry: Distribution;
  let scratch: string;
  beforeAll(async () => { registry = await Distribution.start({ htpasswd: { users: { ci: 'right-password' } } }); });
  afterAll(async () => registry.stop());
  beforeEach(() => { scratch = mkdtempSync(join(tmpdir(), 'oras-step-')); });
  afterEach(() => rmSync(scratch, { recursive: true, force: true }));

  const run = (reference: string, password: string, timeoutMs = 5000) => pullInputs({
    state: join(scratch, 'state'),
    timeoutMs,
    inputs: [{ reference, dir: join(scratch, 'in') }],
    clientFor: (ref) => new RegistryClient(ref.registry, { plainHttp: true, retryBaseMs: 5, credentials: new EnvironmentCredentials({ ORAS_USER: 'ci', ORAS_PASS: password }) }),
    reporter: new SilentReporter(),
  });

  test('an input that is there is pulled by digest', async () => {
    writeFileSync(join(scratch, 'a.txt'), 'alpha');
    const ref = parseReference(`${registry.host}/step/input:v1`);
    const client = new RegistryClient(registry.host, { plainHttp: true, credentials: new EnvironmentCredentials({ ORAS_USER: 'ci', ORAS_PASS: 'right-password' }) });
    const { digest } = await push(client, ref, [{ path: 'a.txt' }], { cwd: scratch }).finally(() => client.close());
    expect(await run(ref.text, 'right-password')).toEqual([{ reference: ref.text, digest }]);
    expect(readFileSync(join(scratch, 'in', 'a.txt'), 'utf8')).toBe('alpha');
    const state = join(scratch, 'state');
    expect(readFileSync(join(state, StateFile.PULL_PID), 'utf8')).toBe(`${process.pid}\n`);
    expect(JSON.parse(readFileSync(join(state, StateFile.INPUTS), 'utf8'))).toEqual([{ reference: ref.text, digest }]);
    expect(readdirSync(state).sort()).toEqual([StateFile.INPUTS, StateFile.PULL_PID]);
  });

  test('a wrong password is reported as a credentials problem, not as a missing input', async () => {
    const error = await run(`${registry.host}/step/input:v1`, 'wrong-password').then(() => undefined, (err: Error) => err);
    expect(error?.cause).toBeInstanceOf(AuthError);
    expect(error?.message).toMatch(/^input 127\.0\.0\.1:\d+\/step\/input:v1: the registry refused this step's credentials \(.*401 UNAUTHORIZED.*\)\. Check the user and password in the Secret named by oras-env/);
    expect(error?.message).not.toContain('may have failed or not finished');
    expect(error?.message).not.toContain('wrong-password');
    expect(readFileSync(join(scratch, 'state', StateFile.PULL_FAILED), 'utf8')).toBe(`${error?.message}\n`);
    expect(existsSync(join(scratch, 'state', StateFile.INPUTS))).toBe(false);
  });

  test('an input that does not appear in time points at the step that produces it', async () => {
    const error = await run(`${registry.host}/step/never:v1`, 'right-password', 300).then(() => undefined, (err: Error) => err);
    expect(error?.cause).toBeInstanceOf(TimeoutError);
    expect(error?.message).toMatch(/^input .*step\/never:v1 is not there: waiting timed out after 0\.3 s; the last answer was: HEAD .* 404 .*The step that produces it may have failed or not finished yet/);
  });
});

import { PREFIX, settingsFromAnnotations, wantsOras } from '../../../runtime/webhook/annotations';
import { PodSpecJson } from '../../../src/injection';

const defaults = { runtimeImage: 'ghcr.io/cdk8s-oras/oras-runtime:1.0.0', inputTimeoutSeconds: 1800, startTimeoutSeconds: 600 };
const spec = (extra: Partial<PodSpecJson['containers'][0]> = {}): PodSpecJson => ({ containers: [{ name: 'app', image: 'busybox:1', command: ['sh'], workingDir: '/work', ...extra }] });
const a = (values: Record<string, string>) => Object.fromEntries(Object.entries(values).map(([k, v]) => [PREFIX + k, v]));

describe('operator annotations', () => {
  test('oras-cache resolves in the namespace on port 5000; URIs are relative to it; paths default to the working dir', () => {
    const settings = settingsFromAnnotations(a({ 'oras-cache': 'orascache', 'input-uri': 'dinosaur/data:one', 'output-uri': 'dinosaur/out:two' }), spec(), defaults);
    expect(settings.registry).toEqual({ host: 'orascache:5000', plainHttp: true, insecure: false, envSecret: undefined });
    expect(settings.inputs).toEqual([{ reference: 'orascache:5000/dinosaur/data:one', path: '/work' }]);
    expect(settings.output).toMatchObject({ reference: 'orascache:5000/dinosaur/out:two', path: '/work', unpack: true });
    expect(settings.container).toBe('app');
    expect(settings.runtimeImage).toBe(defaults.runtimeImage);
  });

  test('input-uri, input-uri_1, input-uri_2 … keep their order, all in input-path', () => {
    const settings = settingsFromAnnotations(a({
      'oras-cache': 'c', 'input-uri_2': 'x/two:t', 'input-uri': 'x/zero:t', 'input-uri_1': 'x/one:t', 'input-path': '/inputs',
    }), spec(), defaults);
    expect(settings.inputs.map((i) => [i.reference, i.path])).toEqual([['c:5000/x/zero:t', '/inputs'], ['c:5000/x/one:t', '/inputs'], ['c:5000/x/two:t', '/inputs']]);
  });

  test('registry, oras-env, oras-container, unpack, output-pipe, debug, container and input-timeout', () => {
    const settings = settingsFromAnnotations(a({
      'registry': 'ghcr.io',
      'oras-env': 'oras-secret',
      'oras-container': 'mirror.example.com/rt:1',
      'unpack': 'false',
      'output-uri': 'acme/out:1',
      'output-path': '/out',
      'output-pipe': '/out/stdout.log',
      'debug': 'true',
      'container': 'second',
      'input-timeout': '90',
    }), { containers: [{ name: 'first', command: ['a'] }, { name: 'second', command: ['b'] }] }, defaults);
    expect(settings.registry).toEqual({ host: 'ghcr.io', plainHttp: false, insecure: false, envSecret: 'oras-secret' });
    expect(settings.runtimeImage).toBe('mirror.example.com/rt:1');
    expect(settings.output).toMatchObject({ reference: 'ghcr.io/acme/out:1', path: '/out', unpack: false, stdoutFile: '/out/stdout.log' });
    expect(settings).toMatchObject({ debug: true, container: 'second', inputTimeoutSeconds: 90 });
  });

  test('insecure alone turns the plain HTTP default of an oras-cache off', () => {
    expect(settingsFromAnnotations(a({ 'oras-cache': 'c', 'insecure': 'true' }), spec(), defaults).registry).toMatchObject({ plainHttp: false, insecure: true });
  });

  test('wantsOras looks only at the prefix', () => {
    expect(wantsOras({ 'other/x': 'y' })).toBe(false);
    expect(wantsOras(a({ 'oras-cache': 'c' }))).toBe(true);
    expect(wantsOras(undefined)).toBe(false);
  });

  test.each([
    [{ 'output-uri': 'x/y:1' }, spec(), /set oras\.converged-computing\.github\.io\/oras-cache to the name of the registry Service/],
    [{ 'oras-cache': 'c', 'registry': 'r.io' }, spec(), /not both/],
    [{ 'oras-cache': 'Bad_Name' }, spec(), /oras-cache "Bad_Name" must be the name of a Service/],
    [{ 'oras-cache': 'c', 'input-uri': 'Bad/Ref:1' }, spec(), /input-uri: Invalid artifact reference "Bad\/Ref:1"/],
    [{ 'oras-cache': 'c', 'output-uri': 'x/y:1' }, spec({ workingDir: undefined }), /output-path is not set and container "app" has no workingDir/],
    [{ 'oras-cache': 'c', 'output-uri': 'x/y:1' }, { containers: [{ name: 'a', command: ['x'] }, { name: 'b', command: ['y'] }] }, /the pod has 2 containers \("a", "b"\); name the one .* in oras\.converged-computing\.github\.io\/container/],
    [{ 'oras-cache': 'c', 'output-uri': 'x/y:1', 'container': 'zzz' }, spec(), /container names "zzz", but the pod has "app"/],
    [{ 'oras-cache': 'c', 'unpack': 'yes' }, spec(), /unpack must be "true" or "false", not "yes"/],
    [{ 'oras-cache': 'c', 'output-pipe': '/x' }, spec(), /output-pipe copies stdout into the output, but .*output-uri is not set/],
    [{ 'oras-cache': 'c', 'input-uri_x': 'a/b:1' }, spec(), /unknown annotation oras\.converged-computing\.github\.io\/input-uri_x/],
    [{ 'oras-cache': 'c', 'ouput-uri': 'a/b:1' }, spec(), /unknown annotation oras\.converged-computing\.github\.io\/ouput-uri/],
    [{ 'oras-cache': 'c', 'input-timeout': 'soon' }, spec(), /input-timeout must be a whole number of seconds/],
    [{ 'oras-cache': 'c', 'input-timeout': '1e21' }, spec(), /input-timeout must be a whole number of seconds written in digits, such as "1800", not "1e21"/],
    [{ 'oras-cache': 'c', 'input-timeout': '1.0' }, spec(), /input-timeout must be a whole number of seconds written in digits/],
    [{ 'oras-cache': 'c', 'plain-http': 'true', 'insecure': 'true' }, spec(), /plain-http and oras\.converged-computing\.github\.io\/insecure exclude each other/],
  ] as [Record<string, string>, PodSpecJson, RegExp][])('refuses %j with a fix', (values, podSpec, message) => {
    expect(() => settingsFromAnnotations(a(values), podSpec, defaults)).toThrow(message);
  });
});

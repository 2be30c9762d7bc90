import { PREFIX, settingsFromAnnotations, wantsOras } from '../../../runtime/webhook/annotations';
import { PodSpecJson } from '../../../src/injection';

const defaults = { runtimeImage: 'ghcr.io/cdk8s-oras/oras-runtime:1.0.0', inputTimeoutSeconds: 1800, startTimeoutSeconds: 600 };
const spec = (extra: Partial<PodSpecJson['containers'][0]> = {}): PodSpecJson => ({ containers: [{ name: 'app', image: 'busybox:1', command: ['sh'], workingDir: '/work', ...extra }] });
const a = (values: Record<string, string>) => Object.fromEntries(Object.entries(values).map(([k, v]) => [PREFIX + k, v]));

describe('operator annotations', () => {
  const annotated = (values: Record<string, string>, podSpec: PodSpecJson = spec()) => settingsFromAnnotations(a(values), podSpec, defaults);
  const settingsOf = (values: Record<string, string>, podSpec?: PodSpecJson) => annotated(values, podSpec).settings;
  const warningsOf = (values: Record<string, string>, podSpec?: PodSpecJson) => annotated(values, podSpec).warnings;

  test('oras-cache resolves in the namespace on port 5000; URIs are relative to it; paths default to the working dir, copied', () => {
    const settings = settingsOf({ 'oras-cache': 'orascache', 'input-uri': 'dinosaur/data:one', 'output-uri': 'dinosaur/out:two' });
    expect(settings.registry).toEqual({ host: 'orascache:5000', plainHttp: true, insecure: false, envSecret: undefined, credentialsSecret: undefined });
    expect(settings.inputs).toEqual([{ reference: 'orascache:5000/dinosaur/data:one', path: '.' }]);
    expect(settings.output).toMatchObject({ reference: 'orascache:5000/dinosaur/out:two', path: '.', unpack: true });
    expect(settings).toMatchObject({ containers: ['app'], placement: 'copy', runtimeImage: defaults.runtimeImage });
  });

  test('without oras-cache or registry, the registry is the Service "oras", as in the prototype', () => {
    expect(settingsOf({ 'output-uri': 'x/y:1' }).output?.reference).toBe('oras:5000/x/y:1');
  });

  test('relative paths are kept for the container to resolve in its working dir, with or without workingDir', () => {
    const settings = settingsOf({ 'input-uri': 'x/in:1', 'input-path': 'inputs', 'output-uri': 'x/out:1', 'output-path': 'pancakes.txt', 'output-pipe': 'pancakes.txt' },
      spec({ workingDir: undefined }));
    expect(settings.inputs[0].path).toBe('inputs');
    expect(settings.output).toMatchObject({ path: 'pancakes.txt', stdoutFile: 'pancakes.txt' });
  });

  test('input-uri, input-uri_1, input-uri_2 … keep their order, all in input-path', () => {
    const settings = settingsOf({ 'oras-cache': 'c', 'input-uri_2': 'x/two:t', 'input-uri': 'x/zero:t', 'input-uri_1': 'x/one:t', 'input-path': '/inputs' });
    expect(settings.inputs.map((i) => [i.reference, i.path])).toEqual([['c:5000/x/zero:t', '/inputs'], ['c:5000/x/one:t', '/inputs'], ['c:5000/x/two:t', '/inputs']]);
  });

  test('registry, oras-env, docker-config, oras-container, unpack, output-pipe, debug, container and input-timeout', () => {
    const settings = settingsOf({
      'registry': 'ghcr.io',
      'oras-env': 'oras-secret',
      'docker-config': 'ghcr-pull',
      'oras-container': 'mirror.example.com/rt:1',
      'unpack': 'false',
      'output-uri': 'acme/out:1',
      'output-path': '/out',
      'output-pipe': '/out/stdout.log',
      'debug': 'true',
      'container': 'second',
      'input-timeout': '90',
    }, { containers: [{ name: 'first', command: ['a'] }, { name: 'second', command: ['b'] }] });
    expect(settings.registry).toEqual({ host: 'ghcr.io', plainHttp: false, insecure: false, envSecret: 'oras-secret', credentialsSecret: 'ghcr-pull' });
    expect(settings.runtimeImage).toBe('mirror.example.com/rt:1');
    expect(settings.output).toMatchObject({ reference: 'ghcr.io/acme/out:1', path: '/out', unpack: false, stdoutFile: '/out/stdout.log' });
    expect(settings).toMatchObject({ debug: true, containers: ['second'], inputTimeoutSeconds: 90 });
  });

  test('ca-configmap and ca-secret: <name> (key ca.crt) or <name>/<key>; an oras-cache with one speaks HTTPS', () => {
    expect(settingsOf({ 'ca-configmap': 'registry-ca' }).registry).toMatchObject({ plainHttp: false, caBundle: { configMapName: 'registry-ca', key: 'ca.crt' } });
    expect(settingsOf({ 'ca-secret': 'oras-tls/ca.pem' }).registry).toMatchObject({ plainHttp: false, caBundle: { secretName: 'oras-tls', key: 'ca.pem' } });
    expect(() => settingsOf({ 'ca-secret': 'a', 'ca-configmap': 'b' })).toThrow(/set either .*ca-configmap or .*ca-secret, not both/);
    expect(() => settingsOf({ 'ca-configmap': 'Bad Name' })).toThrow(/ca-configmap "Bad Name" must be <name> \(the key ca\.crt\) or <name>\/<key> of a ConfigMap in this namespace/);
  });

  test('container takes a comma-separated list of launchers', () => {
    const pod = { containers: [{ name: 'a', command: ['x'] }, { name: 'b', command: ['y'] }, { name: 'c', command: ['z'] }] };
    expect(settingsOf({ 'container': 'a, c', 'output-uri': 'x/y:1' }, pod).containers).toEqual(['a', 'c']);
    expect(warningsOf({ container: 'a,c' }, pod)).toEqual([]);
  });

  test('insecure alone turns the plain HTTP default of an oras-cache off', () => {
    expect(settingsOf({ 'oras-cache': 'c', 'insecure': 'true' }).registry).toMatchObject({ plainHttp: false, insecure: true });
  });

  test('wantsOras looks only at the prefix', () => {
    expect(wantsOras({ 'other/x': 'y' })).toBe(false);
    expect(wantsOras(a({ 'oras-cache': 'c' }))).toBe(true);
    expect(wantsOras(undefined)).toBe(false);
  });

  describe('what the prototype accepted but means nothing here is admitted with a warning', () => {
    test('entrypoint and oras-entrypoint are ignored', () => {
      const warnings = warningsOf({ 'entrypoint': 'https://example.com/e.sh', 'oras-entrypoint': 'https://example.com/o.sh' });
      expect(warnings).toEqual([
        expect.stringMatching(/^oras\.converged-computing\.github\.io\/entrypoint is ignored: nothing is downloaded/),
        expect.stringMatching(/^oras\.converged-computing\.github\.io\/oras-entrypoint is ignored: nothing is downloaded/),
      ]);
    });

    test.each(['ghcr.io/oras-project/oras:v1.1.0', 'ghcr.io/oras-project/oras', 'docker.io/bitnami/oras@sha256:' + 'a'.repeat(64), 'localhost:5000/oras:1'])(
      'oras-container %s (the oras CLI) gives way to the runtime image', (image) => {
        const { settings, warnings } = settingsFromAnnotations(a({ 'oras-container': image }), spec(), defaults);
        expect(settings.runtimeImage).toBe(defaults.runtimeImage);
        expect(warnings).toEqual([expect.stringContaining(`"${image}" is the oras CLI, which cannot run the pull and push steps; the runtime image ${defaults.runtimeImage} is used`)]);
      });

    test('several containers and no container annotation: the first, named in the warning', () => {
      const { settings, warnings } = settingsFromAnnotations(a({ 'output-uri': 'x/y:1' }),
        { containers: [{ name: 'main', command: ['x'] }, { name: 'helper', command: ['y'] }] }, defaults);
      expect(settings.containers).toEqual(['main']);
      expect(warnings).toEqual([expect.stringMatching(/^the pod has 2 containers \("main", "helper"\) and no .*container: "main", the first, runs the command/)]);
    });
  });

  test.each([
    [{ 'oras-cache': 'c', 'registry': 'r.io' }, spec(), /not both/],
    [{ 'oras-cache': 'Bad_Name' }, spec(), /oras-cache "Bad_Name" must be the name of a Service/],
    [{ 'oras-cache': 'c', 'input-uri': 'Bad/Ref:1' }, spec(), /input-uri: Invalid artifact reference "Bad\/Ref:1"/],
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

import { injectOras, InjectionSettings, isInjected, PodSpecJson } from '../src/injection';
import { WRAPPER_SCRIPT_IN_SPEC } from '../src/wrapper';

/** The app container's command: the wrapper script inline, then its arguments. */
const wrapped = (...args: string[]) => ['/bin/sh', '-c', WRAPPER_SCRIPT_IN_SPEC, 'oras-wrap', ...args];

const base = (): PodSpecJson => ({
  containers: [{ name: 'app', image: 'busybox:1', command: ['sh', '-c'], args: ['echo "$1"', 'x y'] }],
});

const settings = (overrides: Partial<InjectionSettings> = {}): InjectionSettings => ({
  runtimeImage: 'ghcr.io/cdk8s-oras/oras-runtime:1.0.0',
  registry: { host: 'cache:5000', plainHttp: true, insecure: false },
  inputs: [{ reference: 'cache:5000/a:r-out', path: '/in/a' }, { reference: 'cache:5000/b:r-out', path: '/in/b' }],
  output: { reference: 'cache:5000/c:r-out', path: '/out' },
  inputTimeoutSeconds: 60,
  startTimeoutSeconds: 600,
  ...overrides,
});

describe('injectOras', () => {
  test('a CA bundle is mounted into the runtime containers and passed as --ca-file; it needs HTTPS', () => {
    const registry = { host: 'cache:5000', plainHttp: false, insecure: false, caBundle: { configMapName: 'registry-ca', key: 'root.pem' } };
    const spec = injectOras(base(), settings({ registry }));
    expect(spec.volumes).toContainEqual({ name: 'oras-ca-0', configMap: { name: 'registry-ca', items: [{ key: 'root.pem', path: 'ca.crt' }] } });
    for (const runtime of [spec.containers[0], spec.containers[2]]) {
      expect(runtime.args).toEqual(expect.arrayContaining(['--ca-file', '/oras-ca/0/ca.crt']));
      expect(runtime.volumeMounts).toContainEqual({ name: 'oras-ca-0', mountPath: '/oras-ca/0', readOnly: true });
    }
    expect(spec.containers[1].volumeMounts?.some((m) => m.name === 'oras-ca-0')).toBe(false);
    const secret = injectOras(base(), settings({ registry: { ...registry, caBundle: { secretName: 'tls', key: 'ca.crt' } } }));
    expect(secret.volumes).toContainEqual({ name: 'oras-ca-0', secret: { secretName: 'tls', items: [{ key: 'ca.crt', path: 'ca.crt' }] } });
    expect(() => injectOras(base(), settings({ registry: { ...registry, plainHttp: true } }))).toThrow(/a CA bundle verifies the registry's HTTPS certificate, but the registry is set to plain HTTP/);
  });

  describe("placement 'copy' (the webhook): nothing is mounted over the app's paths", () => {
    const copied = (overrides: Partial<InjectionSettings> = {}) => injectOras(base(), settings({
      placement: 'copy',
      inputs: [{ reference: 'cache:5000/a:r-out', path: 'inputs' }, { reference: 'cache:5000/b:r-out', path: './inputs/' }, { reference: 'cache:5000/c:1', path: '/abs' }],
      output: { reference: 'cache:5000/c:r-out', path: 'pancakes.txt', stdoutFile: 'pancakes.txt' },
      ...overrides,
    }));

    test('inputs are staged in one volume and copied to their (relative) paths; the output is copied out for oras-push', () => {
      const spec = copied();
      const [pull, app, push] = spec.containers;
      expect(pull.args).toEqual(['step', 'pull', '--state', '/oras/state', '--timeout', '60s',
        '--input', 'cache:5000/a:r-out=/oras-inputs/0', '--input', 'cache:5000/b:r-out=/oras-inputs/0', '--input', 'cache:5000/c:1=/oras-inputs/1', '--plain-http-host', 'cache:5000']);
      expect(pull.volumeMounts).toContainEqual({ name: 'oras-inputs', mountPath: '/oras-inputs' });
      expect(app.command).toEqual(wrapped('--state', '/oras/state', '--stdout', 'pancakes.txt', '--await-pull', '600',
        '--copy-in', '/oras/inputs/0=inputs', '--copy-in', '/oras/inputs/1=/abs', '--copy-out', 'pancakes.txt=/oras/output/app',
        '--', 'sh', '-c', 'echo "$1"', 'x y'));
      // Only under /oras: whatever the image keeps at "inputs" or in its working dir stays visible.
      expect(app.volumeMounts).toEqual([
        { name: 'oras-runtime', mountPath: '/oras/state' },
        { name: 'oras-inputs', mountPath: '/oras/inputs', readOnly: true },
        { name: 'oras-output', mountPath: '/oras/output' },
      ]);
      expect(push.args).toEqual(['step', 'push', '--state', '/oras/state', '--start-timeout', '600s', '--dir', '/oras-output/app', '--to', 'cache:5000/c:r-out', '--plain-http-host', 'cache:5000']);
      expect(push.volumeMounts).toContainEqual({ name: 'oras-output', mountPath: '/oras-output', readOnly: true });
      expect(spec.volumes?.map((v) => v.name)).toEqual(['oras-runtime', 'oras-scratch', 'oras-inputs', 'oras-output']);
    });

    test('several app containers: each is wrapped with its own id, gets the inputs, and copies out to its own directory', () => {
      const pod: PodSpecJson = { containers: [{ name: 'a', command: ['x'] }, { name: 'side', command: ['s'] }, { name: 'b', command: ['y'] }] };
      const spec = injectOras(pod, settings({ placement: 'copy', containers: ['a', 'b'], inputs: [{ reference: 'cache:5000/a:1', path: '.' }], output: { reference: 'cache:5000/o:1', path: 'out' } }));
      expect(spec.containers.map((c) => c.name)).toEqual(['oras-pull', 'a', 'side', 'b', 'oras-push']);
      const [, a, side, b, push] = spec.containers;
      for (const [app, argv] of [[a, 'x'], [b, 'y']] as const) {
        expect(app.command).toEqual(wrapped('--state', '/oras/state', '--id', app.name, '--await-pull', '600',
          '--copy-in', '/oras/inputs/0=.', '--copy-out', `out=/oras/output/${app.name}`, '--', argv));
      }
      expect(side.command).toEqual(['s']);
      expect(push.args).toEqual(['step', 'push', '--state', '/oras/state', '--start-timeout', '600s',
        '--dir', '/oras-output/a', '--dir', '/oras-output/b', '--launcher', 'a', '--launcher', 'b', '--to', 'cache:5000/o:1', '--plain-http-host', 'cache:5000']);
    });

    test.each([
      ['an input under /oras', { inputs: [{ reference: 'r:1/a:1', path: '/oras/x' }] }, /the input path "\/oras\/x" is reserved/],
      ['the root as output', { output: { reference: 'r:1/o:1', path: '//' } }, /the output path "\/\/" \(that is "\/"\) is reserved \(the root, and \/oras/],
      ['a path on two lines', { inputs: [{ reference: 'r:1/a:1', path: 'in\nx' }] }, /the input path "in\\nx" must be a non-empty path on one line/],
      ['a stdout file that is a directory', { output: { reference: 'r:1/o:1', path: '.', stdoutFile: 'logs/' } }, /the stdout file "logs\/" must name a file/],
      ['a container named twice', { containers: ['app', 'app'] }, /the container "app" is named twice/],
    ] as [string, Partial<InjectionSettings>, RegExp][])('refuses %s with a fix', (_name, overrides, message) => {
      expect(() => copied(overrides)).toThrow(message);
    });
  });

  test('wraps the argv inline, pulls in a first container, pushes in a last one, one volume per input path', () => {
    const spec = injectOras(base(), settings());
    expect(spec.initContainers).toBeUndefined();
    expect(spec.containers.map((c) => c.name)).toEqual(['oras-pull', 'app', 'oras-push']);
    const [pull, app, push] = spec.containers;
    expect(app.command).toEqual(wrapped('--state', '/oras/state', '--await-pull', '600', '--', 'sh', '-c', 'echo "$1"', 'x y'));
    expect(app.args).toBeUndefined();
    expect(app.volumeMounts).toEqual([
      { name: 'oras-runtime', mountPath: '/oras/state' },
      { name: 'oras-input-0', mountPath: '/in/a', readOnly: true },
      { name: 'oras-input-1', mountPath: '/in/b', readOnly: true },
      { name: 'oras-output', mountPath: '/out' },
    ]);
    expect(pull.args).toEqual([
      'step', 'pull', '--state', '/oras/state', '--timeout', '60s',
      '--input', 'cache:5000/a:r-out=/oras-inputs/0', '--input', 'cache:5000/b:r-out=/oras-inputs/1', '--plain-http-host', 'cache:5000',
    ]);
    expect(pull.volumeMounts).toContainEqual({ name: 'oras-runtime', mountPath: '/oras/state' });
    expect(push.args).toEqual(['step', 'push', '--state', '/oras/state', '--start-timeout', '600s', '--dir', '/oras-output', '--to', 'cache:5000/c:r-out', '--plain-http-host', 'cache:5000']);
    expect(push.volumeMounts).toContainEqual({ name: 'oras-runtime', mountPath: '/oras/state', readOnly: true });
    expect(spec.shareProcessNamespace).toBe(true);
    expect(spec.restartPolicy).toBe('Never');
    expect(spec.volumes?.map((v) => v.name)).toEqual(['oras-runtime', 'oras-scratch', 'oras-input-0', 'oras-input-1', 'oras-output']);
  });

  test('the runtime containers are hardened and pinned to the runtime image', () => {
    const spec = injectOras(base(), settings());
    for (const c of [spec.containers[0], spec.containers[2]]) {
      expect(c.image).toBe('ghcr.io/cdk8s-oras/oras-runtime:1.0.0');
      expect(c.securityContext).toEqual({
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        privileged: false,
        capabilities: { drop: ['ALL'] },
      });
      expect(c.volumeMounts).toContainEqual({ name: 'oras-scratch', mountPath: '/tmp' });
    }
  });

  test('inputs that share a path share a volume', () => {
    const spec = injectOras(base(), settings({ inputs: [{ reference: 'r:5000/a:1', path: '/in' }, { reference: 'r:5000/b:1', path: '/in' }] }));
    expect(spec.volumes?.filter((v) => v.name.startsWith('oras-input-'))).toHaveLength(1);
    expect(spec.containers[0].args).toEqual(expect.arrayContaining(['r:5000/a:1=/oras-inputs/0', 'r:5000/b:1=/oras-inputs/0']));
  });

  test('credentials come from a mounted docker config and env secrets, never from arguments', () => {
    const registry = { host: 'r.io', plainHttp: false, insecure: true, credentialsSecret: 'login', envSecret: 'oras-env' };
    const spec = injectOras(base(), settings({ registry, inputs: [{ reference: 'r.io/a:1', path: '/in' }] }));
    const pull = spec.containers[0];
    expect(pull.env).toBeUndefined();
    expect(pull.envFrom).toEqual([{ secretRef: { name: 'oras-env' } }]);
    expect(pull.args).toEqual(expect.arrayContaining(['--insecure-host', 'r.io', '--registry-config', '/oras-registry-auth/0/config.json']));
    expect(pull.volumeMounts).toContainEqual({ name: 'oras-registry-auth-0', mountPath: '/oras-registry-auth/0', readOnly: true });
    expect(spec.volumes).toContainEqual({ name: 'oras-registry-auth-0', secret: { secretName: 'login', items: [{ key: '.dockerconfigjson', path: 'config.json' }] } });
  });

  test('each input reaches its own registry: a private HTTPS input with its credentials and CA next to a plain-HTTP output', () => {
    const ghcr = { host: 'ghcr.io', plainHttp: false, insecure: false, credentialsSecret: 'ghcr-login', caBundle: { configMapName: 'corp-ca', key: 'ca.crt' } };
    const spec = injectOras(base(), settings({
      registry: { host: 'cache:5000', plainHttp: true, insecure: false, credentialsSecret: 'cache-login' },
      inputs: [{ reference: 'ghcr.io/acme/data:v1', path: '/in/a', registry: ghcr }, { reference: 'cache:5000/b:r-out', path: '/in/b' }, { reference: 'quay.io/x/y:1', path: '/in/c' }],
    }));
    const [pull, , push] = spec.containers;
    expect(pull.args!.slice(pull.args!.indexOf('--input', 6) + 6)).toEqual([
      '--plain-http-host', 'cache:5000', '--registry-config', '/oras-registry-auth/0/config.json', '--registry-config', '/oras-registry-auth/1/config.json', '--ca-file', '/oras-ca/0/ca.crt',
    ]);
    expect(push.args).toEqual(expect.arrayContaining(['--plain-http-host', 'cache:5000', '--registry-config', '/oras-registry-auth/1/config.json']));
    expect(push.args).not.toContain('/oras-registry-auth/0/config.json');
    expect(push.args).not.toContain('--ca-file');
    expect(push.volumeMounts?.map((m) => m.name)).toEqual(['oras-runtime', 'oras-output', 'oras-scratch', 'oras-registry-auth-1']);
    expect(spec.volumes?.filter((v) => /^oras-(registry-auth|ca)-/.test(v.name))).toEqual([
      { name: 'oras-registry-auth-0', secret: { secretName: 'ghcr-login', items: [{ key: '.dockerconfigjson', path: 'config.json' }] } },
      { name: 'oras-registry-auth-1', secret: { secretName: 'cache-login', items: [{ key: '.dockerconfigjson', path: 'config.json' }] } },
      { name: 'oras-ca-0', configMap: { name: 'corp-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
    ]);
    expect(() => injectOras(base(), settings({
      inputs: [{ reference: 'ghcr.io/a:1', path: '/a', registry: ghcr }, { reference: 'ghcr.io/b:1', path: '/b', registry: { ...ghcr, credentialsSecret: 'other' } }],
    }))).toThrow(/ghcr\.io\/a:1 and ghcr\.io\/b:1 come from one host, but with different connection settings or credentials\. Take both from one OrasRegistry/);
  });

  test('output options: stdout file, failure reference, no unpack, annotations', () => {
    const spec = injectOras(base(), settings({
      output: { reference: 'c:5000/o:1', path: '/out/', stdoutFile: 'log.txt', failureReference: 'c:5000/o:1-failed', unpack: false, annotations: { k: 'v=w' } },
    }));
    expect(spec.containers[1].command?.slice(0, 11)).toEqual(wrapped('--state', '/oras/state', '--stdout', '/out/log.txt', '--await-pull', '600', '--'));
    expect(spec.containers[2].args).toEqual(expect.arrayContaining(['--failure-to', 'c:5000/o:1-failed', '--no-unpack', '--annotation', 'k=v=w']));
  });

  test('a trailing slash in an input path names the same volume', () => {
    const spec = injectOras(base(), settings({ inputs: [{ reference: 'r:5000/a:1', path: '/in/' }, { reference: 'r:5000/b:1', path: '/in' }] }));
    expect(spec.containers[0].args).toEqual(expect.arrayContaining(['r:5000/a:1=/oras-inputs/0', 'r:5000/b:1=/oras-inputs/0']));
  });

  test('an output in an input directory shares its volume, writable', () => {
    const spec = injectOras(base(), settings({ inputs: [{ reference: 'r:5000/a:1', path: '/work' }], output: { reference: 'r:5000/o:1', path: '/work/', stdoutFile: '/tmp/log.txt' } }));
    expect(spec.volumes?.map((v) => v.name)).toEqual(['oras-runtime', 'oras-scratch', 'oras-input-0']);
    expect(spec.containers[1].volumeMounts).toContainEqual({ name: 'oras-input-0', mountPath: '/work', readOnly: false });
    expect(spec.containers[2].volumeMounts).toContainEqual({ name: 'oras-input-0', mountPath: '/oras-output', readOnly: true });
    expect(spec.containers[1].command).toEqual(expect.arrayContaining(['--stdout', '/tmp/log.txt']));
  });

  test('without an output there is no push container; without inputs no pull container, and the wrapper waits for none', () => {
    expect(injectOras(base(), settings({ output: undefined })).containers.map((c) => c.name)).toEqual(['oras-pull', 'app']);
    const noInputs = injectOras(base(), settings({ inputs: [] }));
    expect(noInputs.containers.map((c) => c.name)).toEqual(['app', 'oras-push']);
    expect(noInputs.containers[0].command).toEqual(wrapped('--state', '/oras/state', '--', 'sh', '-c', 'echo "$1"', 'x y'));
    expect(noInputs.shareProcessNamespace).toBe(true);
    const neither = injectOras(base(), settings({ inputs: [], output: undefined }));
    expect(neither.containers.map((c) => c.name)).toEqual(['app']);
    expect(neither.volumes?.map((v) => v.name)).toEqual(['oras-runtime']);
    expect(neither.shareProcessNamespace).toBeUndefined();
  });

  test('is pure and idempotent', () => {
    const input = base();
    const copy = JSON.parse(JSON.stringify(input));
    const once = injectOras(input, settings());
    expect(input).toEqual(copy);
    expect(isInjected(once)).toBe(true);
    expect(injectOras(once, settings())).toEqual(once);
  });

  test('shell "runtime": an init container copies the runtime\'s static busybox, which runs the wrapper; still idempotent', () => {
    const once = injectOras(base(), settings({ shell: 'runtime', memoKey: 'a'.repeat(64) }));
    expect(once.initContainers?.map((c) => c.name)).toEqual(['oras-shell']);
    expect(once.containers[1].command?.slice(0, 5)).toEqual(['/oras/bin/busybox', 'sh', '-c', WRAPPER_SCRIPT_IN_SPEC, 'oras-wrap']);
    expect(isInjected(once)).toBe(true);
    expect(injectOras(once, settings({ shell: 'runtime' }))).toEqual(once);
    expect(() => injectOras({ ...base(), initContainers: [{ name: 'oras-shell', image: 'x:1' }] }, settings()))
      .toThrow(/the container name "oras-shell" is reserved for cdk8s-oras/);
  });

  test('paths are resolved before use: ".", ".." and extra slashes', () => {
    const spec = injectOras(base(), settings({
      inputs: [{ reference: 'r:5000/a:1', path: '/in/./a/' }, { reference: 'r:5000/b:1', path: '/in//a' }],
      output: { reference: 'r:5000/o:1', path: '/x/../out/', stdoutFile: '/logs/./stdout.txt' },
    }));
    expect(spec.containers[1].volumeMounts).toEqual([
      { name: 'oras-runtime', mountPath: '/oras/state' },
      { name: 'oras-input-0', mountPath: '/in/a', readOnly: true },
      { name: 'oras-output', mountPath: '/out' },
    ]);
    expect(spec.containers[1].command).toEqual(expect.arrayContaining(['--stdout', '/logs/stdout.txt']));
  });

  test('only a pod injectOras prepared counts as prepared, even after other webhooks changed it', () => {
    const prepared = injectOras(base(), settings());
    prepared.initContainers = [{ name: 'istio-init', image: 'istio/proxyv2:1' }];
    prepared.containers[0].image = 'mirror.example.com/oras-runtime:1.0.0';
    prepared.containers.forEach((c) => { c.env = [{ name: 'INJECTED', value: '1' }]; });
    expect(isInjected(prepared)).toBe(true);
    expect(isInjected(injectOras(base(), settings({ inputs: [], output: undefined })))).toBe(true);
    expect(isInjected({ ...base(), initContainers: [{ name: 'oras-pull', image: 'busybox:1', command: ['true'] }] })).toBe(false);
    // Our pull container and volume, but an app that is not wrapped; or wrapped by another version's script.
    const [pull, app] = injectOras(base(), settings()).containers;
    expect(isInjected({ containers: [pull, base().containers[0]], volumes: [{ name: 'oras-runtime', emptyDir: {} }] })).toBe(false);
    const otherScript = { ...app, command: ['/bin/sh', '-c', '# another wrapper', ...app.command!.slice(3)] };
    expect(isInjected({ containers: [pull, otherScript], volumes: [{ name: 'oras-runtime', emptyDir: {} }] })).toBe(false);
    // What earlier versions wrote (an init container that installed the wrapper) counts, and only whole.
    const legacyPull = { name: 'oras-pull', args: ['step', 'pull', '--state', '/oras/state', '--wrapper', '/oras/bin/oras-wrap'], volumeMounts: [{ name: 'oras-runtime', mountPath: '/oras' }] };
    const legacyApp = { name: 'app', command: ['/bin/sh', '/oras/bin/oras-wrap', '--state', '/oras/state', '--', 'true'], volumeMounts: [{ name: 'oras-runtime', mountPath: '/oras' }] };
    const volumes = [{ name: 'oras-runtime', emptyDir: {} }];
    expect(isInjected({ initContainers: [legacyPull], containers: [legacyApp], volumes })).toBe(true);
    expect(isInjected({ initContainers: [legacyPull], containers: base().containers, volumes })).toBe(false);
    expect(isInjected({ containers: [legacyApp], volumes })).toBe(false);
  });

  test.each([
    ['a user init container named oras-pull', { ...base(), initContainers: [{ name: 'oras-pull', image: 'busybox:1', command: ['true'] }] }, {}, /the container name "oras-pull" is reserved for cdk8s-oras; rename that container/],
    ['a user container named oras-pull', { containers: [...base().containers, { name: 'oras-pull', image: 'busybox:1', command: ['true'] }] }, { containers: ['app'] },
      /the container name "oras-pull" is reserved for cdk8s-oras; rename that container/],
    ['an input path that resolves to /oras', base(), { inputs: [{ reference: 'r:1/a:1', path: '/a/../oras' }] }, /the input path "\/a\/\.\.\/oras" \(that is "\/oras"\) is reserved/],
    ['an input path that resolves to the root', base(), { inputs: [{ reference: 'r:1/a:1', path: '/in/..' }] }, /the input path "\/in\/\.\." \(that is "\/"\) is reserved/],
    ['an input path that resolves to a mount of the app', { containers: [{ ...base().containers[0], volumeMounts: [{ name: 'data', mountPath: '/data/' }] }] },
      { inputs: [{ reference: 'r:1/a:1', path: '/x/../data' }] }, /the input path "\/x\/\.\.\/data" \(that is "\/data"\) is already a volume mount of container "app"/],
    ['an output path under /oras', base(), { output: { reference: 'r:1/o:1', path: '/oras/./out' } }, /the output path "\/oras\/\.\/out" \(that is "\/oras\/out"\) is reserved/],
    ['a stdout file on the wrapper\'s FIFO', base(), { output: { reference: 'r:1/o:1', path: '/out', stdoutFile: '/oras/state/stdout.fifo' } },
      /the stdout file "\/oras\/state\/stdout\.fifo" is inside \/oras, where the runtime keeps its state \(the stdout FIFO, the exit code\)/],
    ['a stdout file on the exit code', base(), { output: { reference: 'r:1/o:1', path: '/out', stdoutFile: '/oras/./state/exit-code' } }, /is inside \/oras/],
    ['plain HTTP with insecure', base(), { registry: { host: 'r.io', plainHttp: true, insecure: true } }, /plain HTTP and insecure .* exclude each other/],
    ['an input timeout that no duration can write', base(), { inputTimeoutSeconds: 1e21 }, /the input timeout of 1e\+21 seconds must be a whole number of seconds from 1 to 31536000/],
    ['a fractional start timeout', base(), { startTimeoutSeconds: 1.5 }, /the start timeout of 1\.5 seconds must be a whole number/],
  ] as [string, PodSpecJson, Partial<InjectionSettings>, RegExp][])('refuses %s with a fix', (_name, spec, overrides, message) => {
    expect(() => injectOras(spec, settings(overrides))).toThrow(message);
  });

  test.each([
    ['no command', { containers: [{ name: 'app', image: 'x:1', args: ['a'] }] }, {}, /container "app" has no command.*set command \(and args\) explicitly/],
    ['two containers', { containers: [{ name: 'a', command: ['x'] }, { name: 'b', command: ['y'] }] }, {}, /the pod has 2 containers \("a", "b"\); say which one/],
    ['a missing container', base(), { containers: ['nope'] }, /there is no container "nope" to wrap; the pod has "app"/],
    ['a reserved container name', { containers: [{ name: 'app', command: ['x'] }, { name: 'oras-push', command: ['y'] }] }, { containers: ['app'] }, /"oras-push" is reserved/],
    ['a reserved volume name', { ...base(), volumes: [{ name: 'oras-data', emptyDir: {} }] }, {}, /prefix "oras-", which cdk8s-oras reserves/],
    ['a relative input path', base(), { inputs: [{ reference: 'r:1/a:1', path: 'in' }] }, /the input path "in" must be absolute/],
    ['an input under /oras', base(), { inputs: [{ reference: 'r:1/a:1', path: '/oras/x' }] }, /the input path "\/oras\/x" is reserved/],
    ['a nested stdout file', base(), { output: { reference: 'r:1/o:1', path: '/out', stdoutFile: 'a/b' } }, /stdout file "a\/b" must be a file name in the output directory, or an absolute path/],
  ] as [string, PodSpecJson, Partial<InjectionSettings>, RegExp][])('refuses %s with a fix', (_name, spec, overrides, message) => {
    expect(() => injectOras(spec, settings(overrides))).toThrow(message);
  });
});

import { ApiObject, Chart, Duration, JsonPatch, Size, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { OrasArtifact, OrasRegistry, OrasRuntimeImage, OrasWorkflow, OrasWorkflowStep, OrasWorkflowStepProps } from '../src';
import { PROVENANCE } from '../src/injection';
import { WRAPPER_SCRIPT_IN_SPEC } from '../src/wrapper';
import { expectValidKubernetes } from './util/kubernetes-schema';

const registry = OrasRegistry.fromHost('cache:5000', { plainHttp: true });

function synthStep(props: Partial<OrasWorkflowStepProps> = {}) {
  const chart = Testing.chart();
  const workflow = new OrasWorkflow(chart, 'Wf', { name: 'wf', registry, runId: 'r1', graph: false });
  const step = workflow.addStep('build', { image: 'busybox:1.36.1', command: ['make'], output: { path: '/out' }, ...props });
  const manifests = Testing.synth(chart);
  const job = manifests.find((m) => m.kind === 'Job');
  const pod = job.spec.template.spec;
  return { step, manifests, job, pod, main: pod.containers.find((c: any) => c.name === 'main') };
}

describe('OrasWorkflowStep', () => {
  test('escape hatch: ApiObject.of(step) is its Job, and a JSON patch reaches the synthesized Job', () => {
    const chart = Testing.chart();
    const workflow = new OrasWorkflow(chart, 'Wf', { name: 'wf', registry: OrasRegistry.fromHost('cache:5000', { plainHttp: true }), runId: 'r1' });
    const step = workflow.addStep('s', { image: 'busybox:1.36.1', command: ['true'] });
    expect(ApiObject.of(step)).toBe(step.job);
    ApiObject.of(step).addJsonPatch(JsonPatch.add('/spec/template/spec/nodeSelector', { 'kubernetes.io/arch': 'arm64' }));
    expect(Testing.synth(chart).find((o) => o.kind === 'Job').spec.template.spec.nodeSelector).toEqual({ 'kubernetes.io/arch': 'arm64' });
  });

  test('a Job whose pod is prepared: wrapper, push, hardened main container; kubectl picks main', () => {
    const { step, manifests, job, pod, main } = synthStep({ args: ['all', 'V=1'], memoize: false });
    expectValidKubernetes(manifests);
    expect(job.metadata.name).toBe('wf-build-r1');
    expect(job.spec.ttlSecondsAfterFinished).toBe(86400);
    expect(job.metadata.labels).toMatchObject({ 'oras.land/step': 'wf-build', 'oras.land/run-id': 'r1', 'oras.land/workflow': 'wf' });
    expect(job.spec.backoffLimit).toBe(0);
    expect(step.output.reference).toBe('cache:5000/wf/build:r1-output');
    // The runtime's static busybox runs the wrapper; an init container copies it into the pod.
    expect(main.command).toEqual(['/oras/bin/busybox', 'sh', '-c', WRAPPER_SCRIPT_IN_SPEC, 'oras-wrap', '--state', '/oras/state', '--', 'make', 'all', 'V=1']);
    expect(main.volumeMounts).toContainEqual({ name: 'oras-shell', mountPath: '/oras/bin', readOnly: true });
    expect(pod.initContainers).toEqual([expect.objectContaining({
      name: 'oras-shell', command: ['/app/busybox', 'cp', '/app/busybox', '/oras/bin/busybox'], volumeMounts: [{ name: 'oras-shell', mountPath: '/oras/bin' }],
    })]);
    expect(pod.initContainers[0].securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true });
    expect(main.securityContext).toMatchObject({ runAsUser: 65532, runAsNonRoot: true, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(main.volumeMounts).toContainEqual({ name: 'tmp', mountPath: '/tmp' });
    expect(pod.containers.map((c: any) => c.name)).toEqual(['main', 'oras-push']);
    expect(job.spec.template.metadata.annotations).toEqual({ 'kubectl.kubernetes.io/default-container': 'main' });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    expect(pod.containers[1].args).toEqual(expect.arrayContaining(['--annotation', `${PROVENANCE.STEP}=wf-build`, '--annotation', `${PROVENANCE.IMAGE}=busybox:1.36.1`]));
    for (const c of pod.containers) expect(c.image).not.toMatch(/:latest$/);
  });

  test('Job settings, env, resources, working dir and service account', () => {
    const chart = Testing.chart();
    const workflow = new OrasWorkflow(chart, 'Wf', { name: 'wf', registry, runId: 'r1', graph: false });
    workflow.addStep('s', {
      image: 'busybox:1.36.1',
      command: ['true'],
      env: { MODE: 'fast' },
      resources: {
        cpu: { request: kplus.Cpu.millis(250), limit: kplus.Cpu.units(2) },
        memory: { request: Size.mebibytes(256), limit: Size.gibibytes(2) },
      },
      workingDir: '/work',
      serviceAccount: kplus.ServiceAccount.fromServiceAccountName(chart, 'Sa', 'builder'),
      backoffLimit: 2,
      activeDeadline: Duration.hours(1),
      ttlAfterFinished: Duration.days(1),
      security: { user: 1000, group: 1000, readOnlyRootFilesystem: false },
    });
    const manifests = Testing.synth(chart);
    expectValidKubernetes(manifests);
    const job = manifests.find((m) => m.kind === 'Job');
    const main = job.spec.template.spec.containers[0];
    expect(job.spec).toMatchObject({ backoffLimit: 2, activeDeadlineSeconds: 3600, ttlSecondsAfterFinished: 86400 });
    expect(main.env).toEqual([{ name: 'MODE', value: 'fast' }]);
    expect(main.resources).toEqual({ requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '2', memory: '2Gi' } });
    expect(main.workingDir).toBe('/work');
    expect(main.securityContext).toMatchObject({ runAsUser: 1000, runAsGroup: 1000, readOnlyRootFilesystem: false });
    expect(job.spec.template.spec.serviceAccountName).toBe('builder');
    expect(job.spec.template.spec.automountServiceAccountToken).toBe(true);
    // No output: no push container.
    expect(job.spec.template.spec.containers.map((c: any) => c.name)).toEqual(['main']);
  });

  test('output repository and tag, outputPipe, uploadOnFailure, inputTimeout, startTimeout and a custom runtime image', () => {
    const { step, pod, main } = synthStep({
      inputs: [{ artifact: OrasArtifact.fromReference('cache:5000/data/x:v1'), path: '/in', external: true }],
      output: { path: '/results', repository: 'team/results', tag: 'v2', unpack: false },
      outputPipe: 'stdout.txt',
      uploadOnFailure: true,
      inputTimeout: Duration.minutes(2),
      startTimeout: Duration.minutes(3),
      runtimeImage: OrasRuntimeImage.fromImage('mirror.example.com/oras-runtime:9.9.9'),
    });
    expect(step.output.reference).toBe('cache:5000/team/results:r1-v2');
    expect(pod.containers.map((c: any) => c.name)).toEqual(['oras-pull', 'main', 'oras-push']);
    const [pull, , push] = pod.containers;
    expect(main.command.slice(5, 12)).toEqual(['--state', '/oras/state', '--stdout', '/results/stdout.txt', '--await-pull', '180', '--']);
    expect(push.args).toEqual(expect.arrayContaining(['--failure-to', 'cache:5000/team/results:r1-v2-failed', '--no-unpack', '--start-timeout', '180s']));
    expect(pull.args).toEqual(expect.arrayContaining(['--timeout', '120s']));
    for (const c of [pull, push]) expect(c.image).toBe('mirror.example.com/oras-runtime:9.9.9');
  });

  test('inputs come from other steps, each at its own path', () => {
    const chart = Testing.chart();
    const workflow = new OrasWorkflow(chart, 'Wf', { name: 'wf', registry, runId: 'r1' });
    const a = workflow.addStep('a', { image: 'busybox:1.36.1', command: ['true'], output: { path: '/out' } });
    const b = workflow.addStep('b', { image: 'busybox:1.36.1', command: ['true'], output: { path: '/out' } });
    workflow.addStep('c', { image: 'busybox:1.36.1', command: ['true'], inputs: [{ artifact: a.output, path: '/in/a' }, { artifact: b.output, path: '/in/b' }] });
    const jobs = Testing.synth(chart).filter((m) => m.kind === 'Job');
    const c = jobs.find((j) => j.metadata.name === 'wf-c-r1').spec.template.spec;
    expect(c.containers.map((container: any) => container.name)).toEqual(['oras-pull', 'main']);
    expect(c.containers[0].args).toEqual(expect.arrayContaining(['--timeout', '1800s']));
    expect(c.containers[1].command.slice(5, 10)).toEqual(['--state', '/oras/state', '--await-pull', '600', '--']);
    expect(c.containers[1].volumeMounts).toEqual(expect.arrayContaining([
      { name: 'oras-input-0', mountPath: '/in/a', readOnly: true },
      { name: 'oras-input-1', mountPath: '/in/b', readOnly: true },
    ]));
  });

  test('a step may run as root when asked; the runtime containers stay non-root', () => {
    const { manifests, pod, main } = synthStep({ security: { user: 0, group: 0, ensureNonRoot: false } });
    expectValidKubernetes(manifests);
    expect(pod.securityContext.runAsNonRoot).toBe(false);
    expect(main.securityContext).toMatchObject({ runAsUser: 0, runAsNonRoot: false });
    for (const runtime of pod.containers.filter((c: any) => c.name !== 'main')) {
      expect(runtime.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532 });
    }
  });

  test('a standalone step needs a registry and has no run id prefix', () => {
    const chart = Testing.chart();
    expect(() => new OrasWorkflowStep(chart, 'Lone', { image: 'busybox:1.36.1', command: ['true'] })).toThrow(/it has no registry\. Create it inside an OrasWorkflow, or pass registry/);
    const step = new OrasWorkflowStep(chart, 'Lone2', { image: 'busybox:1.36.1', command: ['true'], registry, output: { path: '/o', tag: 'x' } });
    expect(step.output.reference).toBe('cache:5000/oras-steps/lone2:x');
  });

  test.each([
    [{ command: [] }, /it has no command\. Give the full argv/],
    [{ image: 'busybox' }, /image "busybox" is not pinned/],
    [{ outputPipe: 'log', output: undefined }, /outputPipe writes into the output directory, but the step has no output/],
    [{ backoffLimit: -1 }, /backoffLimit must be a whole number of at least 0/],
    [{ output: { path: 'out' } }, /the output path "out" must be absolute/],
    [{ output: { path: '/out' }, outputPipe: '../x' }, /stdout file "\.\.\/x" must be a file name in the output directory/],
    [{ output: { path: '/out', tag: 'bad tag' } }, /its output is not a valid artifact: .*tag "r1-bad tag"/],
    [{ name: 'Bad_Name' }, /the name "Bad_Name" must be a DNS label/],
    [{ inputs: [{ artifact: OrasArtifact.fromReference('cache:5000/x:1'), path: 'rel' }] }, /the input path "rel" must be absolute/],
    [{ inputs: [{ artifact: OrasArtifact.fromReference('cache:5000/x:1'), path: '/in' }, { artifact: OrasArtifact.fromReference('cache:5000/y:1'), path: '/in/' }] },
      /two inputs \(cache:5000\/x:1 and cache:5000\/y:1\) go to "\/in\/"/],
    [{
      inputs: [{ artifact: OrasRegistry.fromHost('ghcr.io').artifact('o/r', 't'), path: '/in', external: true },
        { artifact: OrasRegistry.fromHost('ghcr.io', { insecure: true }).artifact('o/s', 't'), path: '/in2', external: true }],
    },
    /ghcr\.io\/o\/r:t and ghcr\.io\/o\/s:t come from one host, but with different connection settings or credentials\. Take both from one OrasRegistry/],
  ] as [Partial<OrasWorkflowStepProps>, RegExp][])('refuses %j at synth time', (props, message) => {
    expect(() => synthStep(props)).toThrow(message);
  });

  test('output of a step without one names the fix', () => {
    const chart = Testing.chart();
    const workflow = new OrasWorkflow(chart, 'Wf', { name: 'wf', registry, runId: 'r1' });
    const step = workflow.addStep('quiet', { image: 'busybox:1.36.1', command: ['true'] });
    expect(step.hasOutput).toBe(false);
    expect(() => step.output).toThrow(/has no output to read\. Add output: \{ path \} to its props/);
  });

  test('credentials of an external registry are a mounted docker config secret', () => {
    const chart = Testing.chart();
    const ghcr = OrasRegistry.fromHost('ghcr.io', { credentials: kplus.Secret.fromSecretName(chart, 'Login', 'ghcr-login') });
    const workflow = new OrasWorkflow(chart, 'Wf', { name: 'wf', registry: ghcr, runId: 'r1', graph: false });
    workflow.addStep('s', { image: 'busybox:1.36.1', command: ['true'], output: { path: '/out' } });
    const text = JSON.stringify(Testing.synth(chart));
    expect(text).toContain('"secretName":"ghcr-login"');
    expect(text).not.toMatch(/password|ORAS_PASS/i);
  });

  test('an external input keeps its own registry: its credentials reach oras-pull, and plain HTTP stays with the in-cluster registry', () => {
    const chart = Testing.chart();
    const cache = OrasRegistry.fromHost('oras:5000', { plainHttp: true });
    const ghcr = OrasRegistry.fromHost('ghcr.io', { credentials: kplus.Secret.fromSecretName(chart, 'Login', 'ghcr-login') });
    const workflow = new OrasWorkflow(chart, 'Wf', { name: 'wf', registry: cache, runId: 'r1', graph: false });
    workflow.addStep('s', {
      image: 'busybox:1.36.1',
      command: ['true'],
      inputs: [
        { artifact: ghcr.artifact('acme/private', 'v1'), path: '/private', external: true },
        { artifact: OrasArtifact.fromReference('quay.io/acme/public:v1'), path: '/public', external: true },
      ],
      output: { path: '/out' },
      memoize: false,
    });
    const spec = Testing.synth(chart).find((o) => o.kind === 'Job').spec.template.spec;
    const [pull, , push] = spec.containers;
    expect(pull.args).toEqual(expect.arrayContaining(['--registry-config', '/oras-registry-auth/0/config.json']));
    expect(pull.volumeMounts).toContainEqual({ name: 'oras-registry-auth-0', mountPath: '/oras-registry-auth/0', readOnly: true });
    expect(spec.volumes).toContainEqual({ name: 'oras-registry-auth-0', secret: { secretName: 'ghcr-login', items: [{ key: '.dockerconfigjson', path: 'config.json' }] } });
    // Plain HTTP for the cache only: ghcr.io and quay.io are reached over verified HTTPS.
    expect(pull.args.filter((_a: string, i: number) => pull.args[i - 1] === '--plain-http-host')).toEqual([]);
    expect(push.args).toEqual(expect.arrayContaining(['--plain-http-host', 'oras:5000']));
    expect(push.args).not.toContain('--registry-config');
  });

  test('memoized by default: oras-pull gets the key and reaches the output registry, oras-push tags the memo', () => {
    const { manifests, pod } = synthStep({ command: ['make'] });
    expectValidKubernetes(manifests);
    expect(pod.containers.map((c: any) => c.name)).toEqual(['oras-pull', 'main', 'oras-push']);
    const [pull, main, push] = pod.containers;
    const key = pull.args[pull.args.indexOf('--memo-key') + 1];
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(pull.args).toEqual(expect.arrayContaining(['--memo-to', 'cache:5000/wf/build:r1-output', '--plain-http-host', 'cache:5000',
      '--annotation', `${PROVENANCE.RUN_ID}=r1`, '--annotation', `${PROVENANCE.WORKFLOW}=wf`]));
    expect(main.command).toEqual(expect.arrayContaining(['--await-pull', '600']));
    expect(push.args).toContain('--memoize');
  });

  test('useImageShell: no init container, the image\'s /bin/sh runs the wrapper', () => {
    const { pod, main, manifests } = synthStep({ useImageShell: true });
    expectValidKubernetes(manifests);
    expect(pod.initContainers).toBeUndefined();
    expect(main.command.slice(0, 2)).toEqual(['/bin/sh', '-c']);
    expect(main.volumeMounts.some((m: any) => m.name === 'oras-shell')).toBe(false);
  });

  test('the memo key changes with what the command computes from, not with how the pod runs', () => {
    const keyOf = (props: Partial<OrasWorkflowStepProps>) => {
      const pull = synthStep(props).pod.containers[0];
      return pull.args[pull.args.indexOf('--memo-key') + 1];
    };
    const base = keyOf({});
    expect(keyOf({})).toBe(base);
    expect(keyOf({ resources: { cpu: { request: kplus.Cpu.millis(500) } }, backoffLimit: 2 })).toBe(base);
    for (const changed of [{ command: ['make', 'all'] }, { args: ['x'] }, { env: { A: '1' } }, { image: 'busybox:1.37.0' }, { workingDir: '/w' }]) {
      expect(keyOf(changed)).not.toBe(base);
    }
    const noMemo = synthStep({ memoize: false }).pod;
    expect(noMemo.containers.map((c: any) => c.name)).toEqual(['main', 'oras-push']);
    expect(noMemo.containers[1].args).not.toContain('--memoize');
  });

  test('a long run id still gives a Job name within 63 characters, unique to the run', () => {
    const names = ['Run_2026.12.02_nightly-build-with-a-long-name', 'Run_2026.12.02_nightly-build-with-a-long-name2'].map((runId) => {
      const chart = Testing.chart();
      const workflow = new OrasWorkflow(chart, 'Wf', { name: 'a-workflow-name-of-forty-characters-xxxx', registry, runId, graph: false });
      const step = workflow.addStep('a-step-with-a-rather-long-id', { image: 'busybox:1.36.1', command: ['true'], ttlAfterFinished: Duration.minutes(5) });
      const job = Testing.synth(chart).find((m) => m.kind === 'Job');
      expect(job.metadata.name).toBe(step.name);
      expect(job.spec.ttlSecondsAfterFinished).toBe(300);
      expect(step.name.length).toBeLessThanOrEqual(63);
      expect(step.name).toMatch(/^a-workflow-name-of-forty-characters-xxxx-a-step-wit-r[0-9a-f]{10}$/);
      return step.name;
    });
    expect(names[0]).not.toBe(names[1]);
  });

  test('the full pod spec: env from Secrets and ConfigMaps, volumes, scheduling, GPUs, ephemeral storage, pull secrets, labels, priority', () => {
    const chart = Testing.chart();
    const workflow = new OrasWorkflow(chart, 'Wf', { name: 'wf', registry, runId: 'r1', graph: false });
    const secret = kplus.Secret.fromSecretName(chart, 'Token', 'api-token');
    const config = kplus.ConfigMap.fromConfigMapName(chart, 'Settings', 'settings');
    workflow.addStep('train', {
      image: 'busybox:1.36.1',
      command: ['train'],
      env: { MODE: 'fast' },
      envVariables: {
        TOKEN: kplus.EnvValue.fromSecretValue({ secret, key: 'token' }),
        LEVEL: kplus.EnvValue.fromConfigMap(config, 'level'),
      },
      envFrom: [kplus.Env.fromConfigMap(config)],
      resources: { ephemeralStorage: { request: Size.gibibytes(1), limit: Size.gibibytes(4) } },
      extendedResources: { 'nvidia.com/gpu': '2' },
      volumes: [
        { volume: kplus.Volume.fromSecret(chart, 'Creds', secret, { name: 'creds' }), path: '/creds', readOnly: true },
        { volume: kplus.Volume.fromConfigMap(chart, 'Conf', config, { name: 'conf' }), path: '/etc/app/app.yaml', subPath: 'app.yaml' },
      ],
      nodeSelector: { 'kubernetes.io/arch': 'amd64' },
      tolerations: [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }],
      affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] }] } } },
      imagePullSecrets: [kplus.Secret.fromSecretName(chart, 'Pull', 'registry-pull')],
      labels: { team: 'ml' },
      annotations: { 'example.com/owner': 'ml-team' },
      priorityClassName: 'batch-high',
      output: { path: '/out' },
    });
    const manifests = Testing.synth(chart);
    expectValidKubernetes(manifests);
    const job = manifests.find((m) => m.kind === 'Job');
    const pod = job.spec.template.spec;
    const main = pod.containers.find((c: any) => c.name === 'main');
    expect(main.env).toEqual([
      { name: 'MODE', value: 'fast' },
      { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'api-token', key: 'token' } } },
      { name: 'LEVEL', valueFrom: { configMapKeyRef: { name: 'settings', key: 'level' } } },
    ]);
    expect(main.envFrom).toEqual([{ configMapRef: { name: 'settings' } }]);
    expect(main.resources.requests['ephemeral-storage']).toBe('1Gi');
    expect(main.resources.limits).toMatchObject({ 'ephemeral-storage': '4Gi', 'nvidia.com/gpu': '2', 'cpu': '1' });
    expect(main.volumeMounts).toEqual(expect.arrayContaining([
      { name: 'creds', mountPath: '/creds', readOnly: true },
      { name: 'conf', mountPath: '/etc/app/app.yaml', subPath: 'app.yaml' },
    ]));
    expect(pod.volumes).toEqual(expect.arrayContaining([
      expect.objectContaining({ name: 'creds', secret: expect.objectContaining({ secretName: 'api-token' }) }),
      expect.objectContaining({ name: 'conf', configMap: expect.objectContaining({ name: 'settings' }) }),
    ]));
    expect(pod).toMatchObject({
      nodeSelector: { 'kubernetes.io/arch': 'amd64' },
      tolerations: [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }],
      imagePullSecrets: [{ name: 'registry-pull' }],
      priorityClassName: 'batch-high',
    });
    expect(pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key).toBe('zone');
    expect(job.metadata.labels).toMatchObject({ 'team': 'ml', 'oras.land/step': 'wf-train' });
    expect(job.spec.template.metadata.labels.team).toBe('ml');
    expect(job.metadata.annotations).toEqual({ 'example.com/owner': 'ml-team' });
    expect(job.spec.template.metadata.annotations).toMatchObject({ 'example.com/owner': 'ml-team', 'kubectl.kubernetes.io/default-container': 'main' });
    // The runtime containers keep their own resources and env.
    for (const runtime of pod.containers.filter((c: any) => c.name !== 'main')) {
      expect(runtime.resources.limits['nvidia.com/gpu']).toBeUndefined();
      expect(runtime.env).toBeUndefined();
    }
  });

  test('secret env values change the memo key by reference, never carry the value', () => {
    const keyOf = (key: string) => {
      const chart = Testing.chart();
      const workflow = new OrasWorkflow(chart, 'Wf', { name: 'wf', registry, runId: 'r1', graph: false });
      const secret = kplus.Secret.fromSecretName(chart, 'S', 'creds');
      workflow.addStep('s', { image: 'busybox:1.36.1', command: ['true'], envVariables: { T: kplus.EnvValue.fromSecretValue({ secret, key }) }, output: { path: '/out' } });
      const pull = Testing.synth(chart).find((m) => m.kind === 'Job').spec.template.spec.containers[0];
      return pull.args[pull.args.indexOf('--memo-key') + 1];
    };
    expect(keyOf('a')).toBe(keyOf('a'));
    expect(keyOf('a')).not.toBe(keyOf('b'));
  });

  test.each([
    [{ labels: { 'oras.land/step': 'x' } }, /the labels oras\.land\/step are set by cdk8s-oras/],
    [{ env: { A: '1' }, envVariables: { A: kplus.EnvValue.fromValue('2') } }, /the env variables A are given in both env and envVariables/],
    [{ extendedResources: { cpu: '1' } }, /"cpu" is no extended resource name/],
    [{ extendedResources: { 'nvidia.com/gpu': '0.5' } }, /nvidia\.com\/gpu needs a whole number of at least 1, not "0\.5"/],
    [{ volumes: [{ volume: kplus.Volume.fromEmptyDir(Testing.chart(), 'V', 'oras-mine'), path: '/x' }] }, /the volume name "oras-mine" uses the prefix "oras-"/],
    [{ volumes: [{ volume: kplus.Volume.fromEmptyDir(Testing.chart(), 'V', 'mine'), path: 'x' }] }, /the volume path "x" must be absolute/],
  ] as [Partial<OrasWorkflowStepProps>, RegExp][])('the pod spec %# is checked at synth time', (props, message) => {
    expect(() => synthStep(props)).toThrow(message);
  });

  test('a step in a namespaced chart gets its namespace', () => {
    const app = Testing.app();
    const chart = new Chart(app, 'ns', { namespace: 'experiments' });
    const workflow = new OrasWorkflow(chart, 'Wf', { name: 'wf', registry, runId: 'r1' });
    workflow.addStep('s', { image: 'busybox:1.36.1', command: ['true'] });
    expect(Testing.synth(chart).every((m) => m.metadata.namespace === 'experiments')).toBe(true);
  });
});

import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { KubeCalls } from '../../../runtime/cli/bundled';
import { SilentReporter } from '../../../runtime/oci/progress';
import { push } from '../../../runtime/oci/push';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { AdvanceOptions, blockDownstream, JobPatcher, resumeDependents } from '../../../runtime/step/advance';
import { Distribution } from '../../util/distribution';
import { KubeApiServer } from '../../util/kube-apiserver';
import { describeWithPeers } from '../../util/peers';

/** The Kubernetes calls as oras-push makes them: the runtime's own bundle (npx projen runtime:bundle). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const kube: KubeCalls = require(join(__dirname, '..', '..', '..', 'runtime', 'build', 'oras-runtime-kube.cjs'));

describeWithPeers(['docker-registry', 'kube-apiserver', 'etcd'], 'advancing a workflow: real Jobs on a kube-apiserver, inputs on a real registry', () => {
  let registry: Distribution;
  let api: KubeApiServer;
  let scratch: string;
  const patched: string[] = [];

  beforeAll(async () => {
    [registry, api] = await Promise.all([Distribution.start(), KubeApiServer.start()]);
    scratch = mkdtempSync(join(tmpdir(), 'oras-advance-'));
  });
  afterAll(async () => {
    await Promise.all([registry?.stop(), api?.stop()]);
    rmSync(scratch, { recursive: true, force: true });
  });

  const jobs: JobPatcher = {
    patchJob: async (name, patch) => {
      patched.push(name);
      return kube.patchJob(name, patch, { namespace: 'default', kubeconfig: api.kubeconfig });
    },
  };
  const options = (resume: AdvanceOptions['resume'], block: string[] = []): AdvanceOptions => ({
    step: 'wf-producer',
    resume,
    block,
    jobs,
    reporter: new SilentReporter(),
    missingJobWaitMs: 15_000,
    clientFor: (ref) => new RegistryClient(ref.registry, { plainHttp: true }),
  });
  const ref = (name: string) => `${registry.host}/wf/${name}:r1-output`;

  async function output(name: string): Promise<void> {
    writeFileSync(join(scratch, 'o.txt'), name);
    const client = new RegistryClient(registry.host, { plainHttp: true });
    await push(client, parseReference(ref(name)), [{ path: 'o.txt' }], { cwd: scratch }).finally(() => client.close());
  }

  async function createSuspendedJob(name: string): Promise<void> {
    const created = await api.request('POST', '/apis/batch/v1/namespaces/default/jobs', {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name },
      spec: { suspend: true, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: 'busybox:1.36.1', command: ['true'] }] } } },
    });
    expect(created.status).toBe(201);
  }

  const job = async (name: string) => (await api.request('GET', `/apis/batch/v1/namespaces/default/jobs/${name}`)).json;

  test('a fan-in is resumed by the producer that finds every input there, and only then; again changes nothing', async () => {
    await createSuspendedJob('fan-in');
    const fanIn = [{ job: 'fan-in', needs: [ref('left'), ref('right')] }];
    await output('left');
    patched.length = 0;
    await resumeDependents(options(fanIn));
    expect(patched).toEqual([]);
    expect((await job('fan-in')).spec.suspend).toBe(true);

    await output('right');
    await resumeDependents(options(fanIn));
    expect(patched).toEqual(['fan-in']);
    expect((await job('fan-in')).spec.suspend).toBe(false);
    // The other producer, finishing at the same moment, patches to the same effect.
    await resumeDependents(options(fanIn));
    expect((await job('fan-in')).spec.suspend).toBe(false);
  });

  test('a dependent applied after its producer ended is waited for, then resumed', async () => {
    await output('early');
    setTimeout(() => { void createSuspendedJob('late'); }, 1500);
    await resumeDependents(options([{ job: 'late', needs: [ref('early')] }]));
    expect((await job('late')).spec.suspend).toBe(false);
  });

  test('a failed producer labels every Job downstream as blocked, with the reason, and leaves them suspended', async () => {
    await createSuspendedJob('child');
    await createSuspendedJob('grandchild');
    await blockDownstream(options([], ['child', 'grandchild']), 'the command exited 3');
    for (const name of ['child', 'grandchild']) {
      const blocked = await job(name);
      expect(blocked.metadata.labels).toMatchObject({ 'oras.land/blocked-by': 'wf-producer' });
      expect(blocked.metadata.annotations['oras.land/blocked-reason']).toBe('the command exited 3');
      expect(blocked.spec.suspend).toBe(true);
    }
  });

  test('a Job that never appears fails the advance with the fix', async () => {
    await output('lonely');
    await expect(resumeDependents({ ...options([{ job: 'never', needs: [ref('lonely')] }]), missingJobWaitMs: 1500 }))
      .rejects.toThrow(/Job never does not exist \(yet\) after 2 s; apply the whole workflow in one kubectl apply/);
  });
});

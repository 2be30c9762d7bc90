// Benchmarks on a real single-node Kubernetes cluster (the test node of
// lib-tests/util/kube-node.ts), as root:
// 1. Step overhead: from Job creation to command start, and from command exit
//    to the Job's Complete condition, for an OrasWorkflowStep and for the
//    same bare Job (same image, command and resources) in the same run, with
//    empty I/O and with a 100 MB input, the input mounted (typed steps) or
//    copied into place (the webhook's placement). Times come from one clock, the
//    kernel's /proc/uptime, read by this process and by the command itself.
// 2. `kubectl apply -f dist/` until every Deployment and DaemonSet is Ready,
//    and until the hello workflow has completed.
// 3. A 20-step workflow (4 chains of 5 steps, each adding 2 MiB to what it
//    read), a cold run and then a rerun of the same definition (fully
//    memoized): wall time from apply to the last Job complete, and the bytes
//    the registry's network interface moved (its /proc/<pid>/net/dev).
// 4. CSI volumes: from the creation of a pod (and of its claim, for a
//    PersistentVolumeClaim of a StorageClass; a static PersistentVolume's
//    claim is bound beforehand) to its command reading a 64 MiB artifact, with the artifact new to the
//    node (cold) and cached (warm), for inline volumes next to both kinds of
//    persistent ones.
//
//   npx projen bench:node [runs]      (default 5 for steps and CSI, 3 for dist/)
//   BENCH_PARTS=steps,dist,rerun,csi selects parts (default: all)
import { randomBytes } from 'crypto';
import { readFileSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Chart, Size, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { buildNodeImages, NODE_IMAGES } from '../lib-tests/util/images';
import { KubeNode, orasPushFile } from '../lib-tests/util/kube-node';
import { median } from '../lib-tests/util/measure';
import { requirePeer, run } from '../lib-tests/util/peers';
import { OrasCsiDriver, OrasRegistry, OrasWorkflow } from '../src';
import { injectOras } from '../src/injection';

const runs = Number(process.argv[2] ?? 5);
const distRuns = Math.max(1, Math.round(runs / 2) + 1);
const root = join(__dirname, '..');
const NAMESPACE = 'bench';

/** Seconds since boot: the same clock inside every container. */
const uptime = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
/** A command that prints the uptime when it starts and when it ends. */
const timed = (work: string) => ['sh', '-c', `read t _ < /proc/uptime; echo "start $t"; ${work}; read t _ < /proc/uptime; echo "end $t"`];

interface Sample {
  readonly start: number;
  readonly end: number;
}

/** Creates the Job through the API, waits for Complete on a watch, and reads the command's own timestamps. */
async function runJob(node: KubeNode, job: any): Promise<Sample> {
  const name = job.metadata.name;
  let completedAt = 0;
  const complete = new Promise<void>((resolve, reject) => {
    const stop = node.watch(`/apis/batch/v1/namespaces/${NAMESPACE}/jobs?fieldSelector=metadata.name=${name}`, (_type, object) => {
      const condition = (object.status?.conditions ?? []).find((c: any) => c.status === 'True' && ['Complete', 'Failed'].includes(c.type));
      if (!condition) return;
      completedAt = uptime();
      stop();
      if (condition.type === 'Complete') resolve(); else reject(new Error(`Job ${name} failed:\n${node.describe(NAMESPACE)}`));
    });
  });
  await new Promise((r) => setTimeout(r, 200));
  const createdAt = uptime();
  const created = await node.request('POST', `/apis/batch/v1/namespaces/${NAMESPACE}/jobs`, job);
  if (created.status !== 201) throw new Error(`creating Job ${name}: ${created.status} ${JSON.stringify(created.json)}`);
  await complete;
  const log = node.kubectlOk(['logs', '-n', NAMESPACE, `job/${name}`, '-c', 'main']);
  const start = Number(/start (\S+)/.exec(log)?.[1]);
  const end = Number(/end (\S+)/.exec(log)?.[1]);
  node.kubectl(['delete', 'job', '-n', NAMESPACE, name, '--wait=false', '--cascade=background']);
  return { start: start - createdAt, end: completedAt - end };
}

/** The same Job without the injection: main container only, its command unwrapped, an emptyDir at /tmp. */
function bareJob(job: any, name: string): any {
  const bare = JSON.parse(JSON.stringify(job));
  bare.metadata = { name };
  const spec = bare.spec.template.spec;
  const command = spec.containers.find((c: any) => c.name === 'main');
  command.command = command.command.slice(command.command.indexOf('--') + 1);
  command.volumeMounts = [{ name: 'tmp', mountPath: '/tmp' }];
  bare.spec.template.spec = { ...spec, initContainers: [], containers: [command], volumes: [{ name: 'tmp', emptyDir: {} }] };
  delete bare.spec.template.spec.shareProcessNamespace;
  delete bare.spec.template.metadata;
  return bare;
}

async function stepOverhead(node: KubeNode): Promise<string[]> {
  node.kubectlOk(['create', 'namespace', NAMESPACE]);
  const address = await node.deployRegistry(NAMESPACE, 180);
  orasPushFile(`${address}/bench/input:v1`, 'data.bin', Buffer.alloc(100 * 1024 * 1024, 7));

  const cases = [
    { name: 'empty I/O', command: timed('true'), inputs: false, copy: false, imageShell: false },
    { name: 'empty I/O, useImageShell (no init container)', command: timed('true'), inputs: false, copy: false, imageShell: true },
    { name: '100 MB input', command: timed('wc -c /in/data.bin'), inputs: true, copy: false, imageShell: false },
    // Copied into the step's /tmp emptyDir, which its non-root user may write (its root file system is read-only).
    { name: '100 MB input, copied (annotated pods)', command: timed('wc -c /tmp/in/data.bin > /tmp/count.txt'), inputs: true, copy: true, imageShell: true },
  ];
  const rows: string[] = [];
  for (const benchCase of cases) {
    const injected: Sample[] = [];
    const bare: Sample[] = [];
    for (let i = 0; i < runs; i++) {
      const chart = Testing.chart();
      const registry = OrasRegistry.fromHost('oras:5000', { plainHttp: true });
      const workflow = new OrasWorkflow(chart, 'Bench', { name: 'bench', registry, runId: `r${i}`, graph: false });
      const step = workflow.addStep(`step${benchCase.inputs ? 'in' : ''}${benchCase.copy ? 'copy' : ''}${benchCase.imageShell ? 'sh' : ''}`, {
        image: NODE_IMAGES.busybox,
        command: benchCase.command,
        // Every run must run its command: the overhead of a step that works.
        memoize: false,
        useImageShell: benchCase.imageShell,
        inputs: benchCase.inputs ? [{ artifact: registry.artifact('bench/input', 'v1'), path: benchCase.copy ? '/tmp/in' : '/in', external: true }] : [],
        output: { path: benchCase.copy ? '/tmp/count.txt' : '/out' },
      });
      const job = Testing.synth(chart).find((m) => m.kind === 'Job');
      if (benchCase.copy) job.spec.template.spec = injectOras(step._basePodSpec(), { ...step._injectionSettings(), placement: 'copy' });
      const bareCommand = benchCase.inputs ? timed('true') : benchCase.command;
      const plain = bareJob(job, `bare-${benchCase.inputs ? 'in' : 'empty'}${benchCase.copy ? '-copy' : ''}-${i}`);
      plain.spec.template.spec.containers[0].command = bareCommand;
      // Alternate which goes first, so that neither always meets a warm node.
      const order: Array<[Sample[], any]> = i % 2 ? [[bare, plain], [injected, job]] : [[injected, job], [bare, plain]];
      for (const [target, object] of order) target.push(await runJob(node, object));
      process.stderr.write('.');
    }
    const m = (list: Sample[], key: keyof Sample) => median(list.map((s) => s[key]));
    const overhead = (m(injected, 'start') - m(bare, 'start')) + (m(injected, 'end') - m(bare, 'end'));
    rows.push(`| ${benchCase.name} | ${m(bare, 'start').toFixed(2)} s | ${m(injected, 'start').toFixed(2)} s | ${m(bare, 'end').toFixed(2)} s | `
      + `${m(injected, 'end').toFixed(2)} s | ${overhead.toFixed(2)} s |`);
  }
  node.kubectl(['delete', 'namespace', NAMESPACE, '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
  return rows;
}

async function distToReady(node: KubeNode): Promise<string[]> {
  const ready = (): boolean => {
    const workloads = node.getJson(['get', 'deployments,daemonsets', '--all-namespaces']).items as any[];
    return workloads.length >= 3 && workloads.every((w) => w.kind === 'Deployment'
      ? w.status.readyReplicas === w.spec.replicas
      : w.status.numberReady === w.status.desiredNumberScheduled && w.status.desiredNumberScheduled > 0);
  };
  const workflowDone = (): boolean => node.getJson(['get', 'jobs', '-n', 'default']).items
    .filter((j: any) => j.metadata.name.startsWith('hello-')).filter((j: any) => j.status.succeeded === 1).length === 3;
  const toReady: number[] = [];
  const toWorkflow: number[] = [];
  for (let i = 0; i < distRuns; i++) {
    const started = Date.now();
    node.kubectlOk(['apply', '-f', join(root, 'dist')]);
    await node.until('dist/ to be Ready', 300_000, ready);
    toReady.push((Date.now() - started) / 1000);
    await node.until('the hello workflow to complete', 300_000, workflowDone);
    toWorkflow.push((Date.now() - started) / 1000);
    node.kubectl(['delete', '-f', join(root, 'dist'), '--wait=true', '--timeout=180s'], { timeoutMs: 200_000 });
    process.stderr.write('.');
  }
  return [
    `| every Deployment and DaemonSet Ready | ${median(toReady).toFixed(1)} s |`,
    `| the hello workflow complete | ${median(toWorkflow).toFixed(1)} s |`,
  ];
}

/** Bytes received and sent by the network interface of the process whose argv holds `word` (its pod's). */
function interfaceBytes(word: string): number {
  const pid = run('pgrep', ['-f', word]).stdout.trim().split('\n')[0];
  if (!pid) throw new Error(`no process matches ${word}`);
  const eth0 = readFileSync(`/proc/${pid}/net/dev`, 'utf8').split('\n').find((line) => line.trim().startsWith('eth0:'));
  if (!eth0) throw new Error(`process ${pid} has no eth0`);
  const fields = eth0.split(':')[1].trim().split(/\s+/).map(Number);
  return fields[0] + fields[8];
}

async function rerun(node: KubeNode): Promise<string[]> {
  const namespace = 'bench-rerun';
  node.kubectlOk(['create', 'namespace', namespace]);
  await node.deployRegistry(namespace, 180);
  const synth = (runId: string) => {
    const chart = Testing.chart();
    const workflow = new OrasWorkflow(chart, 'Twenty', { name: 'twenty', registry: OrasRegistry.fromHost('oras:5000', { plainHttp: true }), runId, graph: false });
    for (let chain = 0; chain < 4; chain++) {
      let previous: ReturnType<typeof workflow.addStep> | undefined;
      for (let k = 0; k < 5; k++) {
        previous = workflow.addStep(`c${chain}s${k}`, {
          image: NODE_IMAGES.busybox,
          command: ['sh', '-c', `${previous ? 'cp /in/* /out/ && ' : ''}head -c 2097152 /dev/urandom > /out/part-${k}.bin`],
          inputs: previous ? [{ artifact: previous.output, path: '/in' }] : [],
          output: { path: '/out' },
          resources: { cpu: { request: kplus.Cpu.millis(50) }, memory: { request: Size.mebibytes(32) } },
        });
      }
    }
    return { objects: Testing.synth(chart), names: workflow.steps.map((s) => s.name) };
  };
  const rows: string[] = [];
  for (const [label, runId] of [['cold run', 'cold'], ['rerun, every step memoized', 'warm']]) {
    const { objects, names } = synth(runId);
    const bytesBefore = interfaceBytes('registry serve');
    const started = Date.now();
    node.apply({ objects, namespace });
    const outcomes = await node.jobOutcomes(namespace, names, 900_000);
    const seconds = (Date.now() - started) / 1000;
    if (Object.values(outcomes).some((o) => o !== 'Complete')) throw new Error(`${label}: ${JSON.stringify(outcomes)}\n${node.describe(namespace)}`);
    const moved = interfaceBytes('registry serve') - bytesBefore;
    const memoized = names.filter((name) => /^oras-wrap: memoized/.test(node.kubectlOk(['logs', '-n', namespace, `job/${name}`, '-c', 'main']))).length;
    rows.push(`| ${label} | ${seconds.toFixed(1)} s | ${(moved / 1024 / 1024).toFixed(1)} MiB | ${memoized} of ${names.length} |`);
    process.stderr.write('.');
  }
  node.kubectl(['delete', 'namespace', namespace, '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
  return rows;
}

/** Creates each object through the API, as `kubectl create` would. */
async function create(node: KubeNode, objects: any[]): Promise<void> {
  for (const object of objects) {
    const plural = { Pod: 'pods', PersistentVolumeClaim: 'persistentvolumeclaims', PersistentVolume: 'persistentvolumes' }[object.kind as string];
    const path = object.kind === 'PersistentVolume' ? `/api/v1/${plural}` : `/api/v1/namespaces/${object.metadata.namespace}/${plural}`;
    const created = await node.request('POST', path, object);
    if (created.status !== 201) throw new Error(`creating ${object.kind} ${object.metadata.name}: ${created.status} ${JSON.stringify(created.json)}`);
  }
}

async function csiVolumes(node: KubeNode): Promise<string[]> {
  const namespace = 'bench-csi';
  const system = 'bench-csi-system';
  node.apply({
    objects: [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: system, labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } } },
    ],
  });
  const address = await node.deployRegistry(namespace, 180);
  const registry = OrasRegistry.fromHost(`oras.${namespace}.svc:5000`, { plainHttp: true });
  const driverChart = new Chart(Testing.app(), 'driver', { namespace: system });
  const driver = new OrasCsiDriver(driverChart, 'Driver', { name: 'bench.oras.land' });
  const storageClass = driver.addStorageClass('Artifacts', { name: 'bench-artifacts', registry });
  node.apply({ objects: Testing.synth(driverChart) });
  for (const workload of ['daemonset/bench-oras-land-node', 'deployment/bench-oras-land-provisioner']) {
    node.kubectlOk(['rollout', 'status', '-n', system, workload, '--timeout=180s'], { timeoutMs: 190_000 });
  }

  /** The objects of one measurement: a pod that prints the uptime when its command starts, and its volume's objects. */
  const objects = (kind: string, name: string, tag: string) => {
    const chart = new Chart(Testing.app(), name, { namespace });
    const artifact = registry.artifact('bench/model', tag);
    const volume = kind === 'inline' ? driver.volume(chart, 'Model', artifact)
      : kind === 'claim' ? kplus.Volume.fromPersistentVolumeClaim(chart, 'Model', kplus.PersistentVolumeClaim.fromClaimName(chart, 'Ref',
        storageClass.claim(chart, 'Claim', { name, artifact }).name), { readOnly: true })
        : driver.persistentVolume(chart, 'Static', artifact, { name, claimName: name }).volume(chart, 'Model');
    new kplus.Pod(chart, 'Pod', {
      metadata: { name },
      containers: [{
        image: NODE_IMAGES.busybox,
        imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
        command: timed('wc -c /model/model.bin'),
        volumeMounts: [{ path: '/model', volume, readOnly: true }],
        securityContext: { ensureNonRoot: false, readOnlyRootFilesystem: true },
        resources: { cpu: { request: kplus.Cpu.millis(10) }, memory: { request: Size.mebibytes(16) } },
      }],
      restartPolicy: kplus.RestartPolicy.NEVER,
    });
    // Claims and volumes before the pod, as kubectl apply orders them.
    return Testing.synth(chart).sort((a, b) => Number(a.kind === 'Pod') - Number(b.kind === 'Pod'));
  };
  const measure = async (kind: string, name: string, tag: string): Promise<number> => {
    const list = objects(kind, name, tag);
    if (kind === 'static') {
      // A static volume and its claim exist before the pods that use them: bound first, untimed.
      await create(node, list.filter((o) => o.kind !== 'Pod'));
      await node.until(`claim ${name} to bind`, 120_000, () => node.getJson(['get', 'pvc', '-n', namespace, name]).status.phase === 'Bound');
    }
    const createdAt = uptime();
    await create(node, kind === 'static' ? list.filter((o) => o.kind === 'Pod') : list);
    const log = await node.until(`pod ${name} to start its command`, 300_000, () => {
      const out = node.kubectl(['logs', '-n', namespace, name]).output;
      return /end \S+/.test(out) ? out : undefined;
    }).catch((err) => { throw new Error(`${err.message}\n${node.describe(namespace)}\n${node.describe(system)}`); });
    if (!log.includes('67108864 /model/model.bin')) throw new Error(`pod ${name} did not read the artifact: ${log}`);
    node.kubectl(['delete', 'pod', '-n', namespace, name, '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });
    node.kubectl(['delete', 'pvc', '-n', namespace, name, '--ignore-not-found', '--wait=false']);
    if (kind === 'static') node.kubectl(['delete', 'pv', name, '--ignore-not-found', '--wait=false']);
    return Number(/start (\S+)/.exec(log)![1]) - createdAt;
  };

  const rows: string[] = [];
  for (const kind of ['inline', 'claim', 'static']) {
    const cold: number[] = [];
    const warm: number[] = [];
    for (let i = 0; i < runs; i++) {
      // A new digest: nothing of it is on the node yet.
      const tag = `${kind}-${i}`;
      orasPushFile(`${address}/bench/model:${tag}`, 'model.bin', randomBytes(64 * 1024 * 1024));
      cold.push(await measure(kind, `${kind}-cold-${i}`, tag));
      warm.push(await measure(kind, `${kind}-warm-${i}`, tag));
      process.stderr.write('.');
    }
    const label = {
      inline: 'inline volume (pod created)',
      claim: 'claim of a StorageClass (claim and pod created together; the provisioner makes the volume)',
      static: 'static PersistentVolume (its claim already bound; pod created)',
    }[kind];
    rows.push(`| ${label} | ${median(cold).toFixed(2)} s | ${median(warm).toFixed(2)} s |`);
  }
  node.kubectl(['delete', 'pvc', '-n', namespace, '--all', '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
  node.kubectl(['delete', '-f', '-', '--wait=true', '--timeout=120s'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: Testing.synth(driverChart) }), timeoutMs: 130_000 });
  node.kubectl(['delete', 'namespace', namespace, system, '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
  return rows;
}

async function main(): Promise<void> {
  const images = mkdtempSync(join(tmpdir(), 'oras-bench-images-'));
  const node = await KubeNode.start({ imageArchives: buildNodeImages(images) });
  rmSync(images, { recursive: true, force: true });
  const parts = (process.env.BENCH_PARTS ?? 'steps,dist,rerun,csi').split(',');
  try {
    const steps = parts.includes('steps') ? await stepOverhead(node) : [];
    const dist = parts.includes('dist') ? await distToReady(node) : [];
    const reruns = parts.includes('rerun') ? await rerun(node) : [];
    const csi = parts.includes('csi') ? await csiVolumes(node) : [];
    const date = new Date().toISOString().slice(0, 10);
    const table = (title: string, header: string, rows: string[]) => {
      if (rows.length === 0) return;
      console.log(`\n${date}, ${title}\n`);
      console.log(header);
      console.log(header.replace(/[^|]+/g, '---'));
      for (const row of rows) console.log(row);
    };
    table(`one node (kubelet ${run(requirePeer('kubelet'), ['--version']).stdout.trim()}, containerd), medians of ${runs} runs`,
      '| case | start: bare | start: step | end: bare | end: step | added in total |', steps);
    table(`kubectl apply -f dist/ on the same node, medians of ${distRuns} runs`, '| until | time |', dist);
    table('a 20-step workflow (4 chains of 5, 2 MiB added per step) on the same node, one run each',
      '| run | apply to last Job complete | registry bytes moved | steps memoized |', reruns);
    table(`CSI volumes of a 64 MiB artifact on the same node, from creating the pod (and its claim) to its command's start, medians of ${runs} runs`,
      '| volume | cold (new to the node) | warm (cached) |', csi);
  } finally {
    await node.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

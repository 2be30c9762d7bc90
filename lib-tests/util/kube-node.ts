import { execFileSync } from 'child_process';
import { generateKeyPairSync, randomBytes } from 'crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { request as httpsRequest } from 'https';
import { connect } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { parse, stringify } from 'yaml';
import { freePort } from './distribution';
import { request as httpRequest } from './http';
import { startEtcd } from './kube-apiserver';
import { findPeer, requirePeer, run } from './peers';
import { Child, sleep, startChild, stopChild, waitForChild } from './processes';

/** The fixed shape of the test node: one bridge and address ranges no other test uses. */
export const NODE = {
  name: 'oras-node',
  /** The CNI bridge; the node's own address on it is where pods reach the API server and DNS. */
  bridge: 'oras-kube0',
  /**
   * The bridge's MAC, set once: a bridge without one takes the lowest MAC of its
   * ports, so it changes when a pod goes away, and the other pods' ARP entries for
   * the gateway (DNS, Services) go stale for seconds: lookups time out as ENOTFOUND.
   */
  bridgeMac: '02:6f:72:61:73:01',
  ip: '10.244.0.1',
  podCidr: '10.244.0.0/24',
  serviceCidr: '10.96.0.0/16',
  /** The `kubernetes` Service: the first address of the range. */
  apiServiceIp: '10.96.0.1',
  apiPort: 6443,
  clusterDomain: 'cluster.local',
  /** Where kubelet keeps pods and plugins: the default, which dist/ bundles' hostPaths assume. */
  kubeletDir: '/var/lib/kubelet',
  /** containerd's state and socket. */
  runDir: '/run/oras-kube',
  /** The CSI plugin's node cache (dist/oras-csi-driver.yaml's cacheDir). */
  csiCacheDir: '/var/lib/oras-csi',
} as const;

/** Programs the node needs, for describeWithPeers and the set-up error. */
export const NODE_PEERS = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'kube-proxy', 'kubectl', 'coredns', 'pause',
  'containerd', 'containerd-shim-runc-v2', 'ctr', 'runc', 'iptables', 'ip', 'openssl', 'podman', 'csi-provisioner'];

const CNI_BIN_DIR = '/usr/lib/cni';
const SANDBOX_IMAGE = 'registry.k8s.io/pause:3.9';
const ISOLATION_CHAIN = 'ORAS-KUBE-ISOLATE';
const NODE_DIR_PREFIX = 'oras-kube-node-';
const CONTAINERD_SOCKET = `${NODE.runDir}/containerd.sock`;

/** A user the API server knows by a static token. */
interface TokenUser {
  readonly name: string;
  readonly groups: string[];
}

const USERS = {
  admin: { name: 'cdk8s-oras-admin', groups: ['system:masters'] },
  controllerManager: { name: 'system:kube-controller-manager', groups: [] },
  scheduler: { name: 'system:kube-scheduler', groups: [] },
  kubelet: { name: `system:node:${NODE.name}`, groups: ['system:nodes'] },
  proxy: { name: 'system:kube-proxy', groups: [] },
  dns: { name: 'oras-test:coredns', groups: [] },
} satisfies Record<string, TokenUser>;

export interface KubeNodeOptions {
  /** Images (saved by podman as OCI archives) to import into containerd before the kubelet starts. */
  readonly imageArchives?: string[];
  /** Default 180 s. */
  readonly startTimeoutMs?: number;
  /**
   * host:port of a plain-HTTP registry on this machine that containerd asks
   * for docker.io images (as a pull-through mirror would answer): it holds
   * the stand-ins of images that pods name verbatim, such as `ubuntu`, whose
   * pull policy is Always.
   */
  readonly dockerHubMirror?: string;
}

export interface KubectlResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly output: string;
}

function sh(file: string, args: string[], what = `${file} ${args.join(' ')}`): string {
  const result = run(file, args);
  if (result.status !== 0) throw new Error(`${what} failed (${result.status}): ${result.output}`);
  return result.stdout;
}

/** Runs without failing: for teardown, where one step must not stop the next. */
function quietly(file: string, args: string[]): void {
  try {
    run(file, args, { timeoutMs: 60_000 });
  } catch {
    // best effort
  }
}

/** A CA and certificates signed by it, with openssl. */
class Pki {
  public readonly caCert: string;
  private readonly caKey: string;

  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    this.caKey = join(dir, 'ca.key');
    this.caCert = join(dir, 'ca.crt');
    sh(requirePeer('openssl'), ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-keyout', this.caKey, '-out', this.caCert, '-subj', '/CN=oras-test-kubernetes-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  }

  /** Issues `<name>.crt` and `<name>.key`; returns their paths. */
  public issue(name: string, subject: string, usage: 'serverAuth' | 'clientAuth', altNames: string[] = []): { cert: string; key: string } {
    const key = join(this.dir, `${name}.key`);
    const cert = join(this.dir, `${name}.crt`);
    const csr = join(this.dir, `${name}.csr`);
    const ext = join(this.dir, `${name}.ext`);
    const openssl = requirePeer('openssl');
    sh(openssl, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', subject]);
    writeFileSync(ext, [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      `extendedKeyUsage=${usage}`,
      ...(altNames.length ? [`subjectAltName=${altNames.join(',')}`] : []),
    ].join('\n'));
    sh(openssl, ['x509', '-req', '-in', csr, '-CA', this.caCert, '-CAkey', this.caKey, '-CAcreateserial', '-days', '2', '-out', cert, '-extfile', ext]);
    return { cert, key };
  }
}

/** Pushes one file `name` holding `content` to `target` with the oras CLI over plain HTTP, as the README tells users to. */
export function orasPushFile(target: string, name: string, content: string | Buffer): void {
  const scratch = mkdtempSync(join(tmpdir(), 'oras-push-file-'));
  try {
    writeFileSync(join(scratch, name), content);
    const pushed = run(requirePeer('oras'), ['push', '--plain-http', target, name], { cwd: scratch });
    if (pushed.status !== 0) throw new Error(`oras push ${target}: ${pushed.output}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** A client of the test node's cluster, as a cluster admin. */
export class KubeCluster {
  /** `https://10.244.0.1:6443` */
  public readonly url = `https://${NODE.ip}:${NODE.apiPort}`;
  /** The cluster CA, PEM. */
  protected caPem = '';

  /** `kubeconfig`: a cluster admin's (system:masters); the CA sits next to it. */
  constructor(public readonly kubeconfig: string) {
    if (existsSync(this.caFile)) this.caPem = readFileSync(this.caFile, 'utf8');
  }

  protected get caFile(): string {
    return `${this.kubeconfig}.ca.crt`;
  }

  /** Runs kubectl as the admin. */
  public kubectl(args: string[], options: { input?: string; timeoutMs?: number } = {}): KubectlResult {
    return run(requirePeer('kubectl'), ['--kubeconfig', this.kubeconfig, ...args], { input: options.input, timeoutMs: options.timeoutMs ?? 120_000 });
  }

  /** kubectl that must succeed; returns stdout. */
  public kubectlOk(args: string[], options: { input?: string; timeoutMs?: number } = {}): string {
    const result = this.kubectl(args, options);
    if (result.status !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${result.status}): ${result.output}`);
    return result.stdout;
  }

  /** kubectl ... -o json, parsed. */
  public getJson(args: string[]): any {
    return JSON.parse(this.kubectlOk([...args, '-o', 'json']));
  }

  /** The environment for a program that should use this cluster (kubectl, README commands). */
  public env(): NodeJS.ProcessEnv {
    return { ...process.env, KUBECONFIG: this.kubeconfig };
  }

  /** The admin's bearer token, from the kubeconfig. */
  protected get token(): string {
    return parse(readFileSync(this.kubeconfig, 'utf8')).users[0].user.token;
  }

  /** An API request as the admin; the body is sent as JSON. */
  public async request(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
    const res = await httpRequest(`${this.url}${path}`, {
      method,
      ca: this.caPem,
      headers: { 'Authorization': `Bearer ${this.token}`, 'Content-Type': 'application/json', 'Accept': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = res.body.toString();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json };
  }

  /**
   * Watches a collection (`path` without `?watch`), calling `onEvent` with each
   * event's type and object as it arrives. Returns a function that stops it.
   */
  public watch(path: string, onEvent: (type: string, object: any) => void): () => void {
    const req = httpsRequest(`${this.url}${path}${path.includes('?') ? '&' : '?'}watch=1`, {
      ca: this.caPem, headers: { Authorization: `Bearer ${this.token}`, Accept: 'application/json' },
    }, (res) => {
      let buffered = '';
      res.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (line.trim()) {
            const event = JSON.parse(line);
            onEvent(event.type, event.object);
          }
        }
      });
    });
    req.on('error', () => undefined);
    req.end();
    return () => req.destroy();
  }

  /** `kubectl apply` of files or of objects (as JSON on stdin). */
  public apply(what: { files?: string[]; objects?: unknown[]; namespace?: string }): string {
    const namespace = what.namespace ? ['-n', what.namespace] : [];
    const files = (what.files ?? []).flatMap((f) => ['-f', f]);
    if (what.objects) return this.kubectlOk(['apply', ...namespace, '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: what.objects }) });
    return this.kubectlOk(['apply', ...namespace, ...files]);
  }

  /**
   * `<cluster IP>:<port>` of a Service, once it accepts connections: the node
   * reaches it through kube-proxy's rules, which follow the endpoints within a second or so.
   */
  public async serviceAddress(namespace: string, name: string, port: number): Promise<string> {
    const ip = this.getJson(['get', 'service', '-n', namespace, name]).spec.clusterIP;
    await this.until(`${namespace}/${name} to accept connections on ${ip}:${port}`, 60_000, () => new Promise<boolean>((resolve) => {
      const socket = connect(port, ip);
      socket.setTimeout(2000, () => { socket.destroy(); resolve(false); });
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => resolve(false));
    }));
    return `${ip}:${port}`;
  }

  /**
   * Applies dist/oras-registry.yaml in `namespace`, waits up to `timeoutSeconds`
   * for it to roll out, and returns its Service's address once it accepts connections.
   */
  public async deployRegistry(namespace: string, timeoutSeconds: number): Promise<string> {
    this.kubectlOk(['apply', '-n', namespace, '-f', join(__dirname, '..', '..', 'dist', 'oras-registry.yaml')]);
    this.kubectlOk(['rollout', 'status', '-n', namespace, 'deployment/oras', `--timeout=${timeoutSeconds}s`], { timeoutMs: (timeoutSeconds + 10) * 1000 });
    return this.serviceAddress(namespace, 'oras', 5000);
  }

  /** Waits until every named Job has finished; returns each one's outcome. */
  public async jobOutcomes(namespace: string, names: string[], timeoutMs: number): Promise<Record<string, 'Complete' | 'Failed'>> {
    const outcomes: Record<string, 'Complete' | 'Failed'> = {};
    await this.until(`Jobs ${names.join(', ')} in ${namespace} to finish`, timeoutMs, () => {
      for (const job of this.getJson(['get', 'jobs', '-n', namespace]).items) {
        const finished = (job.status?.conditions ?? []).find((c: any) => ['Complete', 'Failed'].includes(c.type) && c.status === 'True');
        if (finished && names.includes(job.metadata.name)) outcomes[job.metadata.name] = finished.type;
      }
      return names.every((n) => outcomes[n]);
    }).catch((err) => { throw new Error(`${err.message}\n${this.describe(namespace)}`); });
    return outcomes;
  }

  /** The pods of a Job, oldest first. */
  public podsOfJob(namespace: string, job: string): any[] {
    return this.getJson(['get', 'pods', '-n', namespace, '-l', `job-name=${job}`]).items
      .sort((a: any, b: any) => a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp));
  }

  /** A container's state in a pod (`terminated`, `running` or `waiting`), init containers included. */
  public containerState(pod: any, container: string): any {
    const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
    return statuses.find((s: any) => s.name === container)?.state;
  }

  /** Pods, recent events, and each container's state and last log lines in a namespace: for failure messages. */
  public describe(namespace: string): string {
    const pods = this.kubectl(['get', 'pods', '-n', namespace, '-o', 'wide']).output;
    const events = this.kubectl(['get', 'events', '-n', namespace, '--sort-by=.lastTimestamp']).output.split('\n').slice(-30).join('\n');
    const containers: string[] = [];
    for (const pod of this.getJson(['get', 'pods', '-n', namespace]).items) {
      for (const c of [...(pod.spec.initContainers ?? []), ...pod.spec.containers]) {
        const log = this.kubectl(['logs', '-n', namespace, pod.metadata.name, '-c', c.name, '--tail', '20']).output;
        containers.push(`--- ${pod.metadata.name}/${c.name} ${JSON.stringify(this.containerState(pod, c.name))}\n${log}`);
      }
    }
    return `pods in ${namespace}:\n${pods}\nevents:\n${events}\ncontainers:\n${containers.join('\n')}`;
  }

  /**
   * Waits until nothing is being deleted (no namespace Terminating, no pod with
   * a deletion timestamp), so that a test starts from a settled cluster
   * whatever ran before it.
   */
  public async settle(timeoutMs = 180_000): Promise<void> {
    await this.until('the cluster to settle (nothing Terminating)', timeoutMs, () => {
      const namespaces = (this.getJson(['get', 'namespaces']).items as any[]).filter((n) => n.status.phase === 'Terminating');
      const pods = (this.getJson(['get', 'pods', '--all-namespaces']).items as any[]).filter((p) => p.metadata.deletionTimestamp);
      return namespaces.length === 0 && pods.length === 0;
    }).catch((err) => {
      throw new Error(`${err.message}: ${this.kubectl(['get', 'namespaces,pods', '--all-namespaces']).output}`);
    });
  }

  /**
   * Deletes the CSI bundle's consumers and claims, as the README tells users
   * to before the driver, and waits until the provisioner has deleted the
   * PersistentVolumes it made: it can only while it runs.
   */
  public async deleteCsiClaims(namespace = 'default'): Promise<void> {
    this.kubectl(['delete', '-n', namespace, 'deployment/oras-csi-readers', 'pod/oras-csi-demo', 'pvc/models', 'pvc/models-static', '--ignore-not-found',
      '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
    await this.until('the provisioned PersistentVolumes of csi.oras.land to go', 120_000, () => (this.getJson(['get', 'pv']).items as any[])
      .every((pv) => pv.spec.csi?.driver !== 'csi.oras.land' || pv.spec.persistentVolumeReclaimPolicy !== 'Delete'));
  }

  /** Polls `probe` until it returns a value other than undefined or false. */
  public async until<T>(what: string, timeoutMs: number, probe: () => T | undefined | false | Promise<T | undefined | false>): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      try {
        const value = await probe();
        if (value !== undefined && value !== false) return value;
      } catch (err) {
        last = ` (last error: ${(err as Error).message})`;
      }
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last}`);
      await sleep(500);
    }
  }
}

/**
 * A real single-node Kubernetes cluster on this machine, run from the binaries
 * scripts/install-kube.sh builds: etcd, kube-apiserver, kube-controller-manager,
 * kube-scheduler, kubelet on containerd with runc and the CNI bridge plugin,
 * kube-proxy (iptables) and CoreDNS as host processes.
 *
 * The node's address is a bridge it creates (10.244.0.1); the API server, the
 * kubelet and DNS listen there, and pods reach the API through the
 * `kubernetes` Service (10.96.0.1). Pods may talk to each other and to the
 * node only: a FORWARD rule rejects anything else, and DNS answers names
 * outside the cluster with NXDOMAIN. Images are imported into containerd
 * offline; nothing is pulled.
 *
 * `stop()` deletes every workload, then removes what the node left on the
 * machine: processes, mounts under the kubelet's directory, `cni-*` network
 * namespaces, the bridge, kube-proxy's and our iptables rules, and its
 * directories.
 */
export class KubeNode extends KubeCluster {
  public static async start(options: KubeNodeOptions = {}): Promise<KubeNode> {
    for (const peer of NODE_PEERS) requirePeer(peer);
    if (process.getuid?.() !== 0) throw new Error('The Kubernetes node needs root (mounts, network namespaces, iptables).');
    if (run(requirePeer('ip'), ['link', 'show', NODE.bridge]).status === 0) {
      // An earlier run's API server outlives a killed test process as an orphan of init.
      const live = processes().filter((p) => p.cmdline.includes('kube-apiserver') && p.cmdline.includes(`--advertise-address=${NODE.ip}`) && parentOf(p.pid) !== 1);
      if (live.length > 0) throw new Error(`Another test node runs (kube-apiserver pid ${live[0].pid}); only one fits on a machine.`);
      console.warn(`kube-node: removing what an earlier run left (the bridge ${NODE.bridge} exists)`);
      KubeNode.cleanMachine();
    }
    const dir = mkdtempSync(join(tmpdir(), NODE_DIR_PREFIX));
    const node = new KubeNode(dir);
    try {
      await node.boot(options);
    } catch (err) {
      const logs = node.children.map((c) => `--- ${c.name} ---\n${c.output().slice(-4000)}`).join('\n');
      await node.stop();
      throw new Error(`${(err as Error).message}\n${logs}`);
    }
    return node;
  }

  /** What a node left on the machine: empty after a clean stop(). It looks where cleanMachine() cleans. */
  public static leftovers(): string[] {
    const found: string[] = [];
    const ip = findPeer('ip');
    if (ip && run(ip, ['link', 'show', NODE.bridge]).status === 0) found.push(`the bridge ${NODE.bridge}`);
    const netns = cniNamespaces();
    if (netns.length) found.push(`network namespaces ${netns.join(', ')}`);
    const mounts = nodeMounts();
    if (mounts.length) found.push(`mounts ${mounts.join(', ')}`);
    for (const binary of ['iptables', 'ip6tables'].map(findPeer)) {
      for (const table of binary ? ['filter', 'nat', 'mangle'] : []) {
        const chains = run(binary!, ['-t', table, '-S']).stdout.split('\n').filter((r) => r.startsWith('-N ')).map((r) => r.slice(3)).filter(isNodeChain);
        if (chains.length) found.push(`${binary} ${table} chains ${chains.join(', ')}`);
      }
    }
    const live = nodeProcesses();
    if (live.length) found.push(`processes ${live.map((p) => `${p.pid} ${p.cmdline.slice(0, 80)}`).join('; ')}`);
    for (const path of [NODE.kubeletDir, NODE.runDir, NODE.csiCacheDir]) if (existsSync(path)) found.push(path);
    return found;
  }

  /**
   * Removes what a node leaves on the machine, also after a run that crashed:
   * its processes (found by their working directory's name in their
   * arguments) and containerd's shims, kube-proxy's rules, mounts, `cni-*`
   * network namespaces, the bridge, the isolation chain and the directories.
   */
  public static cleanMachine(): void {
    for (const { pid } of nodeProcesses()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    const kubeProxy = findPeer('kube-proxy');
    if (kubeProxy) quietly(kubeProxy, ['--cleanup']);
    unmountNodeMounts();
    const ip = findPeer('ip');
    if (ip) {
      for (const netns of cniNamespaces()) quietly(ip, ['netns', 'delete', netns]);
      quietly(ip, ['link', 'delete', NODE.bridge]);
    }
    for (const binary of ['iptables', 'ip6tables'].map(findPeer)) {
      if (binary) removeChains(binary, isNodeChain);
    }
    const stale = readdirSync(tmpdir()).filter((d) => d.startsWith(NODE_DIR_PREFIX)).map((d) => join(tmpdir(), d));
    for (const path of [NODE.kubeletDir, NODE.runDir, NODE.csiCacheDir, ...stale]) quietly('rm', ['-rf', '--one-file-system', path]);
  }

  private readonly children: Child[] = [];
  private readonly tokens = new Map<TokenUser, string>();
  private readonly saved: Array<{ file: string; value: string }> = [];
  private readonly logDir: string;
  private stopped = false;

  private constructor(public readonly dir: string) {
    super(join(dir, 'admin.kubeconfig'));
    this.logDir = join(dir, 'logs');
    mkdirSync(this.logDir);
    for (const user of Object.values(USERS)) this.tokens.set(user, randomBytes(24).toString('hex'));
  }

  protected get token(): string {
    return this.tokens.get(USERS.admin)!;
  }

  /** What a component printed (the tail), for failure messages. */
  public log(component: string): string {
    return this.children.find((c) => c.name === component)?.output() ?? '';
  }

  private async boot(options: KubeNodeOptions): Promise<void> {
    const deadline = Date.now() + (options.startTimeoutMs ?? 180_000);
    this.network();
    const pki = new Pki(join(this.dir, 'pki'));
    this.caPem = readFileSync(pki.caCert, 'utf8');
    writeFileSync(this.caFile, this.caPem);
    await this.controlPlane(pki, deadline);
    await this.containerd(deadline, options.imageArchives ?? [], options.dockerHubMirror);
    await this.kubelet(pki, deadline);
    this.start('kube-controller-manager', [
      `--kubeconfig=${this.writeKubeconfig('controller-manager', USERS.controllerManager)}`,
      '--leader-elect=false',
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${join(this.dir, 'sa.key')}`,
      `--root-ca-file=${pki.caCert}`,
      `--cluster-signing-cert-file=${pki.caCert}`,
      `--cluster-signing-key-file=${join(this.dir, 'pki', 'ca.key')}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${await freePort()}`,
      // Finished Jobs with ttlSecondsAfterFinished go quickly.
      '--concurrent-ttl-after-finished-syncs=5',
    ]);
    this.start('kube-scheduler', [
      `--kubeconfig=${this.writeKubeconfig('scheduler', USERS.scheduler)}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${await freePort()}`,
    ]);
    await this.kubeProxy();
    await this.dns(deadline);
    await this.ready(deadline);
  }

  /** The bridge, forwarding, and the rule that keeps pod traffic on the machine. */
  private network(): void {
    const ip = requirePeer('ip');
    const iptables = requirePeer('iptables');
    sh(ip, ['link', 'add', NODE.bridge, 'address', NODE.bridgeMac, 'type', 'bridge']);
    sh(ip, ['addr', 'add', `${NODE.ip}/24`, 'dev', NODE.bridge]);
    sh(ip, ['link', 'set', NODE.bridge, 'up']);
    this.sysctl('net/ipv4/ip_forward', '1');
    // Service traffic between pods on one bridge must pass through iptables.
    this.sysctl('net/bridge/bridge-nf-call-iptables', '1');
    sh(iptables, ['-N', ISOLATION_CHAIN]);
    sh(iptables, ['-A', ISOLATION_CHAIN, '-d', NODE.podCidr, '-j', 'RETURN']);
    sh(iptables, ['-A', ISOLATION_CHAIN, '-j', 'REJECT']);
    sh(iptables, ['-I', 'FORWARD', '-s', NODE.podCidr, '-j', ISOLATION_CHAIN]);
  }

  private sysctl(key: string, value: string): void {
    const file = `/proc/sys/${key}`;
    const old = readFileSync(file, 'utf8').trim();
    if (old === value) return;
    this.saved.push({ file, value: old });
    writeFileSync(file, value);
  }

  private start(name: string, args: string[]): Child {
    const child = startChild(name, requirePeer(name), args, { logFile: join(this.logDir, `${name}.log`) });
    this.children.push(child);
    return child;
  }

  private writeKubeconfig(name: string, user: TokenUser): string {
    const file = join(this.dir, `${name}.kubeconfig`);
    writeFileSync(file, stringify({
      'apiVersion': 'v1',
      'kind': 'Config',
      'clusters': [{ name: 'oras-test', cluster: { 'server': this.url, 'certificate-authority-data': Buffer.from(this.caPem).toString('base64') } }],
      'users': [{ name: user.name, user: { token: this.tokens.get(user) } }],
      'contexts': [{ name: 'oras-test', context: { cluster: 'oras-test', user: user.name, namespace: 'default' } }],
      'current-context': 'oras-test',
    }), { mode: 0o600 });
    return file;
  }

  private async controlPlane(pki: Pki, deadline: number): Promise<void> {
    const { child: etcd, url: etcdUrl } = await startEtcd(requirePeer('etcd'), join(this.dir, 'etcd'), deadline, join(this.logDir, 'etcd.log'));
    this.children.push(etcd);

    const serving = pki.issue('apiserver', '/CN=kube-apiserver', 'serverAuth', [
      `IP:${NODE.ip}`, `IP:${NODE.apiServiceIp}`, 'IP:127.0.0.1',
      'DNS:kubernetes', 'DNS:kubernetes.default', 'DNS:kubernetes.default.svc', `DNS:kubernetes.default.svc.${NODE.clusterDomain}`,
    ]);
    const kubeletClient = pki.issue('apiserver-kubelet-client', '/O=system:masters/CN=kube-apiserver-kubelet-client', 'clientAuth');
    const tokenFile = join(this.dir, 'tokens.csv');
    writeFileSync(tokenFile, [...this.tokens].map(([user, token]) => `${token},${user.name},${user.name},"${user.groups.join(',')}"`).join('\n') + '\n', { mode: 0o600 });
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(this.dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(join(this.dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });

    const apiserver = this.start('kube-apiserver', [
      `--etcd-servers=${etcdUrl}`,
      `--bind-address=${NODE.ip}`,
      `--advertise-address=${NODE.ip}`,
      `--secure-port=${NODE.apiPort}`,
      `--tls-cert-file=${serving.cert}`,
      `--tls-private-key-file=${serving.key}`,
      `--client-ca-file=${pki.caCert}`,
      `--token-auth-file=${tokenFile}`,
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      `--service-account-issuer=https://kubernetes.default.svc.${NODE.clusterDomain}`,
      `--service-account-key-file=${join(this.dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(this.dir, 'sa.key')}`,
      `--service-cluster-ip-range=${NODE.serviceCidr}`,
      '--allow-privileged=true',
      `--kubelet-client-certificate=${kubeletClient.cert}`,
      `--kubelet-client-key=${kubeletClient.key}`,
      '--kubelet-preferred-address-types=InternalIP',
      '--profiling=false',
    ]);
    await waitForChild(apiserver, 'kube-apiserver /readyz', deadline, async () => (await this.request('GET', '/readyz')).status === 200);
    writeFileSync(this.kubeconfig, readFileSync(this.writeKubeconfig('admin', USERS.admin)));

    // CoreDNS reads Services, EndpointSlices and Namespaces, nothing else.
    const role = { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'oras-test:coredns' } };
    for (const [path, body] of [
      ['/apis/rbac.authorization.k8s.io/v1/clusterroles', {
        ...role,
        rules: [
          { apiGroups: [''], resources: ['services', 'namespaces'], verbs: ['list', 'watch'] },
          { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
        ],
      }],
      ['/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'oras-test:coredns' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'oras-test:coredns' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: USERS.dns.name }],
      }],
    ] as const) {
      const created = await this.request('POST', path, body);
      if (created.status !== 201) throw new Error(`creating ${path}: ${created.status} ${JSON.stringify(created.json)}`);
    }
  }

  private async containerd(deadline: number, imageArchives: string[], dockerHubMirror?: string): Promise<void> {
    const root = join(this.dir, 'containerd');
    const cniConf = join(this.dir, 'cni');
    mkdirSync(cniConf);
    mkdirSync(NODE.runDir, { recursive: true });
    writeFileSync(join(cniConf, '10-oras-test.conflist'), JSON.stringify({
      cniVersion: '1.0.0',
      name: 'oras-test',
      plugins: [
        {
          type: 'bridge',
          bridge: NODE.bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: NODE.podCidr, gateway: NODE.ip }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(this.dir, 'ipam') },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }, null, 2));
    const registryHosts = join(this.dir, 'certs.d');
    if (dockerHubMirror) {
      mkdirSync(join(registryHosts, 'docker.io'), { recursive: true });
      writeFileSync(join(registryHosts, 'docker.io', 'hosts.toml'), [
        'server = "https://registry-1.docker.io"',
        `[host."http://${dockerHubMirror}"]`,
        '  capabilities = ["pull", "resolve"]',
        '',
      ].join('\n'));
    }
    const config = join(this.dir, 'containerd.toml');
    writeFileSync(config, [
      'version = 2',
      `root = "${root}"`,
      `state = "${NODE.runDir}/containerd"`,
      '[grpc]',
      `  address = "${CONTAINERD_SOCKET}"`,
      '[plugins."io.containerd.grpc.v1.cri"]',
      `  sandbox_image = "${SANDBOX_IMAGE}"`,
      // This kernel refuses a negative oom_score_adj; without this every sandbox fails.
      '  restrict_oom_score_adj = true',
      '  stream_server_address = "127.0.0.1"',
      '  [plugins."io.containerd.grpc.v1.cri".containerd]',
      '    snapshotter = "overlayfs"',
      '    default_runtime_name = "runc"',
      '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
      '      runtime_type = "io.containerd.runc.v2"',
      ...(dockerHubMirror ? ['  [plugins."io.containerd.grpc.v1.cri".registry]', `    config_path = "${registryHosts}"`] : []),
      '  [plugins."io.containerd.grpc.v1.cri".cni]',
      `    bin_dir = "${CNI_BIN_DIR}"`,
      `    conf_dir = "${cniConf}"`,
      '',
    ].join('\n'));
    const containerd = this.start('containerd', ['--config', config, '--log-level', 'warn']);
    await waitForChild(containerd, 'containerd', deadline, () => this.ctr(['version']).status === 0);
    for (const archive of imageArchives) {
      const imported = this.ctr(['images', 'import', '--no-unpack=false', archive], 300_000);
      if (imported.status !== 0) throw new Error(`ctr images import ${archive}: ${imported.output}`);
    }
  }


  /** ctr in the CRI's namespace. */
  public ctr(args: string[], timeoutMs = 60_000) {
    return run(requirePeer('ctr'), ['--address', CONTAINERD_SOCKET, '--namespace', 'k8s.io', ...args], { timeoutMs });
  }

  private async kubelet(pki: Pki, deadline: number): Promise<void> {
    // The root mount is private here; CSI mounts must propagate from the plugin's container to the kubelet's view.
    mkdirSync(NODE.kubeletDir, { recursive: true });
    sh('mount', ['--bind', NODE.kubeletDir, NODE.kubeletDir]);
    sh('mount', ['--make-rshared', NODE.kubeletDir]);
    const resolvConf = join(this.dir, 'resolv.conf');
    writeFileSync(resolvConf, `nameserver ${NODE.ip}\n`);
    const config = join(this.dir, 'kubelet.yaml');
    writeFileSync(config, stringify({
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      address: NODE.ip,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      healthzPort: await freePort(),
      authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: pki.caCert } },
      authorization: { mode: 'Webhook' },
      containerRuntimeEndpoint: `unix://${CONTAINERD_SOCKET}`,
      cgroupDriver: 'cgroupfs',
      cgroupsPerQOS: false,
      enforceNodeAllocatable: [],
      failSwapOn: false,
      clusterDomain: NODE.clusterDomain,
      clusterDNS: [NODE.ip],
      resolvConf,
      serializeImagePulls: false,
      // Imported images cannot be pulled again: never collect them.
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
      protectKernelDefaults: false,
      // Pods' status reaches the API server quickly.
      nodeStatusUpdateFrequency: '5s',
      syncFrequency: '10s',
    }));
    const kubelet = this.start('kubelet', [
      `--config=${config}`,
      `--kubeconfig=${this.writeKubeconfig('kubelet', USERS.kubelet)}`,
      `--hostname-override=${NODE.name}`,
      `--node-ip=${NODE.ip}`,
      `--root-dir=${NODE.kubeletDir}`,
      '--v=1',
    ]);
    await waitForChild(kubelet, `node ${NODE.name} Ready`, deadline, async () => {
      const node = await this.request('GET', `/api/v1/nodes/${NODE.name}`);
      return node.status === 200 && node.json.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True');
    });
  }

  private async kubeProxy(): Promise<void> {
    const config = join(this.dir, 'kube-proxy.yaml');
    writeFileSync(config, stringify({
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      mode: 'iptables',
      clusterCIDR: NODE.podCidr,
      hostnameOverride: NODE.name,
      clientConnection: { kubeconfig: this.writeKubeconfig('kube-proxy', USERS.proxy) },
      healthzBindAddress: `127.0.0.1:${await freePort()}`,
      metricsBindAddress: `127.0.0.1:${await freePort()}`,
      // Leave the machine's conntrack sysctls alone.
      conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
      nodePortAddresses: [`${NODE.ip}/32`],
    }));
    this.start('kube-proxy', [`--config=${config}`]);
  }

  private async dns(deadline: number): Promise<void> {
    const healthPort = await freePort();
    const readyPort = await freePort();
    const corefile = join(this.dir, 'Corefile');
    writeFileSync(corefile, [
      `${NODE.clusterDomain}:53 in-addr.arpa:53 ip6.arpa:53 {`,
      `  bind ${NODE.ip}`,
      '  errors',
      `  health 127.0.0.1:${healthPort}`,
      `  ready 127.0.0.1:${readyPort}`,
      `  kubernetes ${NODE.clusterDomain} in-addr.arpa ip6.arpa {`,
      `    kubeconfig ${this.writeKubeconfig('coredns', USERS.dns)} oras-test`,
      '  }',
      '  cache 5',
      '}',
      // Nothing leaves the machine: every other name does not exist.
      '.:53 {',
      `  bind ${NODE.ip}`,
      '  template ANY ANY {',
      '    rcode NXDOMAIN',
      '  }',
      '}',
      '',
    ].join('\n'));
    const dns = this.start('coredns', ['-conf', corefile]);
    await waitForChild(dns, 'CoreDNS /ready', deadline, async () => (await httpRequest(`http://127.0.0.1:${readyPort}/ready`)).status === 200);
  }

  /** The controllers have made what every namespace needs. */
  private async ready(deadline: number): Promise<void> {
    const checks: Array<[string, () => Promise<boolean>]> = [
      ['the default ServiceAccount', async () => (await this.request('GET', '/api/v1/namespaces/default/serviceaccounts/default')).status === 200],
      ['the kube-root-ca.crt ConfigMap', async () => (await this.request('GET', '/api/v1/namespaces/default/configmaps/kube-root-ca.crt')).status === 200],
      ['kube-proxy rules for the kubernetes Service', async () => run(requirePeer('iptables'), ['-t', 'nat', '-S', 'KUBE-SERVICES']).stdout.includes(`${NODE.apiServiceIp}/32`)],
    ];
    for (const [what, check] of checks) await waitForChild(this.children, what, deadline, check);
  }

  /**
   * Deletes every workload (consumers of CSI volumes before the DaemonSets
   * that serve them), stops every component and removes what the node left
   * on the machine. Idempotent; each step runs even when an earlier one failed.
   */
  public async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const apiUp = this.children.some((c) => c.name === 'kubelet' && c.process.exitCode === null);
    if (apiUp) await this.deleteWorkloads().catch((err) => console.warn(`kube-node: deleting workloads: ${err}`));
    for (const child of [...this.children].reverse()) await stopChild(child.process, 10_000);
    KubeNode.cleanMachine();
    for (const { file, value } of this.saved.reverse()) writeFileSync(file, value);
  }

  private async deleteWorkloads(): Promise<void> {
    const kubectl = (args: string[]) => this.kubectl(args, { timeoutMs: 120_000 });
    kubectl(['delete', 'mutatingwebhookconfigurations,validatingwebhookconfigurations', '--all', '--wait=false']);
    kubectl(['delete', 'deployments,statefulsets,replicasets,jobs,cronjobs', '--all', '--all-namespaces', '--wait=false']);
    const pods = () => JSON.parse(kubectl(['get', 'pods', '--all-namespaces', '-o', 'json']).stdout || '{"items":[]}').items as any[];
    const ownedByDaemonSet = (pod: any) => (pod.metadata.ownerReferences ?? []).some((o: any) => o.kind === 'DaemonSet');
    const drain = async (which: (pod: any) => boolean, seconds: number) => {
      for (const pod of pods().filter(which)) kubectl(['delete', 'pod', '-n', pod.metadata.namespace, pod.metadata.name, '--wait=false', '--grace-period=5']);
      for (let i = 0; i < seconds * 2 && pods().some(which); i++) await sleep(500);
    };
    await drain((pod) => !ownedByDaemonSet(pod), 90);
    kubectl(['delete', 'daemonsets', '--all', '--all-namespaces', '--wait=false']);
    await drain(() => true, 60);
    const left = pods().map((p) => `${p.metadata.namespace}/${p.metadata.name}`);
    if (left.length > 0) console.warn(`kube-node: pods still there after deletion: ${left.join(', ')}`);
  }
}

/**
 * Removes the chains that `owned` selects from every table: first the rules
 * that jump to them, then their rules, then the chains. kube-proxy --cleanup
 * leaves the kubelet's own (KUBE-FIREWALL, KUBE-KUBELET-CANARY, ...).
 */
function removeChains(binary: string, owned: (chain: string) => boolean): void {
  for (const table of ['filter', 'nat', 'mangle']) {
    const rules = run(binary, ['-t', table, '-S']).stdout.split('\n');
    const chains = rules.filter((r) => r.startsWith('-N ')).map((r) => r.slice(3)).filter(owned);
    for (const rule of rules.filter((r) => r.startsWith('-A ') && / -j (\S+)/.test(r) && owned(/ -j (\S+)/.exec(r)![1]))) {
      // iptables -S prints rules in the form -D takes, quotes included.
      quietly('sh', ['-c', `${binary} -t ${table} -D ${rule.slice(3)}`]);
    }
    for (const chain of chains) quietly(binary, ['-t', table, '-F', chain]);
    for (const chain of chains) quietly(binary, ['-t', table, '-X', chain]);
  }
}

/** The parent's pid, from /proc/<pid>/stat (0 when the process is gone). */
function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/** Every process's pid and command line (NULs as spaces). */
function processes(): Array<{ pid: number; cmdline: string }> {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).flatMap((pid) => {
    try {
      return [{ pid: Number(pid), cmdline: readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ') }];
    } catch {
      return [];
    }
  });
}

/** The node's processes: its components (its directory is in their arguments) and containerd's shims. */
function nodeProcesses(): Array<{ pid: number; cmdline: string }> {
  return processes().filter((p) => p.pid !== process.pid && (p.cmdline.includes(`${tmpdir()}/${NODE_DIR_PREFIX}`) || p.cmdline.includes(CONTAINERD_SOCKET)));
}

/** The network namespaces the CNI plugins made for pods. */
function cniNamespaces(): string[] {
  return existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith('cni-')) : [];
}

/** kube-proxy's chains and our isolation chain. */
function isNodeChain(chain: string): boolean {
  return chain === ISOLATION_CHAIN || chain.includes('KUBE-');
}

/** Mount points the node made: the kubelet's and containerd's, its own directory's, the pods' network namespaces. */
function nodeMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean)
    .map((line) => line.split(' ')[4].replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8))))
    .filter((t) => t.startsWith(NODE.kubeletDir) || t.startsWith(NODE.runDir) || t.includes(NODE_DIR_PREFIX) || t.startsWith('/run/netns/cni-'));
}

/** Unmounts every mount point of nodeMounts(), deepest first (mounts below others come back into view, hence passes). */
function unmountNodeMounts(): void {
  for (let pass = 0; pass < 3; pass++) {
    const targets = nodeMounts().sort((a, b) => b.length - a.length);
    if (targets.length === 0) return;
    for (const target of targets) {
      try {
        execFileSync('umount', [target], { stdio: 'ignore' });
      } catch {
        quietly('umount', ['-l', target]);
      }
    }
  }
}

import { generateKeyPairSync, randomBytes } from 'crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { stringify } from 'yaml';
import { freePort } from './distribution';
import { request as httpRequest, TestResponse } from './http';
import { requirePeer } from './peers';
import { Child, startChild, stopChild, waitForChild } from './processes';

export interface KubeApiServerOptions {
  /** How long to wait for etcd and then for kube-apiserver's /readyz. Default 90 s. */
  readonly startTimeoutMs?: number;
  /** Extra kube-apiserver flags (`--name=value`), appended after the defaults. */
  readonly extraArgs?: string[];
}

export interface KubeResponse extends TestResponse {
  /** The body as text. */
  readonly text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  readonly json: any;
}

/** The user the static token authenticates as; system:masters bypasses RBAC. */
export const KUBE_ADMIN_USER = 'cdk8s-oras-admin';

/** etcd on two free loopback ports, keeping its data in `dataDir` (without fsync). */
export async function startEtcd(binary: string, dataDir: string, deadline: number, logFile?: string): Promise<{ child: Child; url: string }> {
  const clientPort = await freePort();
  const peerPort = await freePort();
  const url = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const child = startChild('etcd', binary, [
    '--name=default',
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${url}`,
    `--advertise-client-urls=${url}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=default=${peerUrl}`,
    '--unsafe-no-fsync=true',
    '--log-level=warn',
  ], { logFile });
  try {
    await waitForChild(child, 'etcd /health', deadline, async () => {
      const res = await httpRequest(`${url}/health`);
      return res.status === 200 && JSON.parse(res.body.toString()).health === 'true';
    });
  } catch (err) {
    await stopChild(child.process, 2_000);
    throw err;
  }
  return { child, url };
}

/**
 * A real kube-apiserver (and its etcd) on loopback ports, run envtest-style:
 * - etcd keeps its data in a temporary directory (without fsync);
 * - kube-apiserver serves HTTPS on 127.0.0.1 only, with a certificate it
 *   self-signs into `--cert-dir` (exposed as `caPem`);
 * - one static bearer token (`--token-auth-file`) for a user in system:masters,
 *   with `--authorization-mode=RBAC` (system:masters is always allowed);
 * - the ServiceAccount admission plugin is off, so pods need no service account;
 * - service account tokens are signed with a freshly generated RSA key.
 * Nothing else runs: no controllers, scheduler or kubelet, so objects are
 * stored and validated but never acted upon.
 *
 * The binaries come from scripts/install-kube.sh.
 */
export class KubeApiServer {
  public static async start(options: KubeApiServerOptions = {}): Promise<KubeApiServer> {
    const etcdBinary = requirePeer('etcd');
    const apiserverBinary = requirePeer('kube-apiserver');
    const deadline = Date.now() + (options.startTimeoutMs ?? 90_000);
    const dir = mkdtempSync(join(tmpdir(), 'oras-kube-apiserver-'));
    const children: Child[] = [];
    try {
      const { child: etcd, url: etcdUrl } = await startEtcd(etcdBinary, join(dir, 'etcd'), deadline);
      children.push(etcd);

      // kube-apiserver
      const token = randomBytes(24).toString('hex');
      const tokenFile = join(dir, 'tokens.csv');
      writeFileSync(tokenFile, `${token},${KUBE_ADMIN_USER},${KUBE_ADMIN_USER},"system:masters"\n`, { mode: 0o600 });
      const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const saPublic = join(dir, 'sa.pub');
      const saPrivate = join(dir, 'sa.key');
      writeFileSync(saPublic, publicKey.export({ type: 'spki', format: 'pem' }));
      writeFileSync(saPrivate, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
      const certDir = join(dir, 'certs');
      mkdirSync(certDir);
      const port = await freePort();
      const url = `https://127.0.0.1:${port}`;
      const apiserver = startChild('kube-apiserver', apiserverBinary, [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${port}`,
        `--cert-dir=${certDir}`,
        `--token-auth-file=${tokenFile}`,
        '--authorization-mode=RBAC',
        '--disable-admission-plugins=ServiceAccount',
        `--service-account-issuer=${url}`,
        `--service-account-key-file=${saPublic}`,
        `--service-account-signing-key-file=${saPrivate}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        '--allow-privileged=true',
        // A loopback address cannot be an endpoint of the "kubernetes" service.
        '--endpoint-reconciler-type=none',
        '--profiling=false',
        ...(options.extraArgs ?? []),
      ]);
      children.push(apiserver);
      // kube-apiserver writes its self-signed certificate (followed by the CA
      // that signed it) before it starts serving.
      const certFile = join(certDir, 'apiserver.crt');
      let caPem = '';
      await waitForChild(apiserver, 'kube-apiserver /readyz', deadline, async () => {
        if (!existsSync(certFile)) return false;
        caPem = readFileSync(certFile, 'utf8');
        const res = await httpRequest(`${url}/readyz`, { ca: caPem, headers: { Authorization: `Bearer ${token}` } });
        return res.status === 200;
      });

      const kubeconfig = join(dir, 'kubeconfig');
      writeFileSync(kubeconfig, stringify({
        'apiVersion': 'v1',
        'kind': 'Config',
        'clusters': [{ name: 'test', cluster: { 'server': url, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } }],
        'users': [{ name: KUBE_ADMIN_USER, user: { token } }],
        'contexts': [{ name: 'test', context: { cluster: 'test', user: KUBE_ADMIN_USER, namespace: 'default' } }],
        'current-context': 'test',
      }), { mode: 0o600 });
      return new KubeApiServer(url, token, caPem, kubeconfig, dir, etcdUrl, etcd, apiserver);
    } catch (err) {
      for (const child of children.reverse()) await stopChild(child.process, 2_000);
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private stopped = false;

  private constructor(
    /** `https://127.0.0.1:<port>` */
    public readonly url: string,
    /** Bearer token of a user in system:masters. */
    public readonly token: string,
    /** PEM to trust for `url`: the serving certificate and the self-signed CA that issued it. */
    public readonly caPem: string,
    /** A kubeconfig file (current context "test") for this server and token. */
    public readonly kubeconfig: string,
    /** Scratch directory: etcd data, certificates, token and key files, kubeconfig. */
    public readonly dir: string,
    /** `http://127.0.0.1:<port>` of the etcd behind the server. */
    public readonly etcdUrl: string,
    private readonly etcd: Child,
    private readonly apiserver: Child,
  ) {}

  /** Everything kube-apiserver printed so far (its tail when long). */
  public log(): string {
    return this.apiserver.output();
  }

  /** Everything etcd printed so far. */
  public etcdLog(): string {
    return this.etcd.output();
  }

  /**
   * An authenticated request to the API. A body that is not a string or
   * Buffer is sent as JSON; `headers` can override Content-Type (for patches).
   */
  public async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<KubeResponse> {
    let payload: string | Buffer | undefined;
    const allHeaders: Record<string, string> = { Authorization: `Bearer ${this.token}`, Accept: 'application/json' };
    if (body !== undefined) {
      payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      allHeaders['Content-Type'] = 'application/json';
    }
    const res = await httpRequest(`${this.url}${path}`, { method, body: payload, ca: this.caPem, headers: { ...allHeaders, ...headers } });
    const text = res.body.toString('utf8');
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { ...res, text, json };
  }

  /** Stops kube-apiserver, then etcd, and removes the scratch directory. Idempotent. */
  public async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await stopChild(this.apiserver.process);
    await stopChild(this.etcd.process);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

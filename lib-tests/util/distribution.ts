import { ChildProcess, spawn } from 'child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'fs';
import { AddressInfo, createServer, connect } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { stringify } from 'yaml';
import { requirePeer, run } from './peers';
import type { TokenIssuer } from './token-issuer';

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, child: ChildProcess, log: () => string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`registry exited with ${child.exitCode}:\n${log()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`registry did not listen on 127.0.0.1:${port} within ${timeoutMs} ms:\n${log()}`);
}

export interface DistributionOptions {
  /** REGISTRY_* variables that override the configuration, as in a pod. */
  readonly env?: Record<string, string>;
  /** Basic auth from a bcrypt htpasswd file holding these users (user -> password). */
  readonly htpasswd?: { readonly users: Record<string, string>; readonly realm?: string };
  /** Token auth: the registry trusts JWTs this issuer signs and sends clients to its realm. */
  readonly token?: TokenIssuer;
  /** Serve HTTPS with a fresh self-signed certificate for 127.0.0.1 (see `caPem`). */
  readonly tls?: boolean;
  /**
   * An existing directory to use as the filesystem storage rootdirectory (the
   * parent of `docker/`), for example from fixtureStorageRoot(). stop() leaves it in place.
   */
  readonly storageRoot?: string;
  /** Default `warn`. */
  readonly logLevel?: 'error' | 'warn' | 'info' | 'debug';
}

/** Writes a bcrypt htpasswd file with `htpasswd -B -i -n`, passwords on stdin. */
export function writeHtpasswd(file: string, users: Record<string, string>): void {
  const htpasswd = requirePeer('htpasswd');
  const lines = Object.entries(users).map(([user, password]) => {
    if (user === '' || user.includes(':')) throw new Error(`htpasswd: invalid user name ${JSON.stringify(user)}`);
    const result = run(htpasswd, ['-B', '-i', '-n', user], { input: password });
    const line = result.stdout.trim();
    if (result.status !== 0 || !line.startsWith(`${user}:`)) throw new Error(`htpasswd failed for ${user}:\n${result.output}`);
    return line;
  });
  writeFileSync(file, lines.map((l) => `${l}\n`).join(''), { mode: 0o600 });
}

/** A self-signed P-256 certificate for 127.0.0.1 and localhost; returns its PEM. */
export function writeSelfSignedCertificate(certFile: string, keyFile: string, commonName = '127.0.0.1'): string {
  const result = run(requirePeer('openssl'), ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-sha256', '-nodes',
    '-days', '2', '-subj', `/CN=${commonName}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout', keyFile, '-out', certFile]);
  if (result.status !== 0) throw new Error(`openssl could not create a certificate:\n${result.output}`);
  return readFileSync(certFile, 'utf8');
}

/**
 * Debian's docker-registry (CNCF distribution 2.8) on a free loopback port,
 * storing into a temporary directory (or `storageRoot`). stop() removes
 * everything start() created.
 */
export class Distribution {
  public static async start(options: DistributionOptions = {}): Promise<Distribution> {
    if (options.htpasswd && options.token) throw new Error('Distribution: htpasswd and token auth exclude each other');
    const binary = requirePeer('docker-registry');
    const dir = mkdtempSync(join(tmpdir(), 'oras-distribution-'));
    let child: ChildProcess | undefined;
    let output = '';
    try {
      let storageRoot = options.storageRoot;
      if (storageRoot === undefined) {
        storageRoot = join(dir, 'data');
        mkdirSync(storageRoot);
      } else if (!statSync(storageRoot).isDirectory()) {
        throw new Error(`Distribution: storageRoot ${storageRoot} is not a directory`);
      }
      const port = await freePort();
      const http: Record<string, unknown> = { addr: `127.0.0.1:${port}` };
      let caPem: string | undefined;
      if (options.tls) {
        const certificate = join(dir, 'tls.crt');
        const key = join(dir, 'tls.key');
        caPem = writeSelfSignedCertificate(certificate, key);
        http.tls = { certificate, key };
      }
      const config: Record<string, unknown> = {
        version: '0.1',
        log: { level: options.logLevel ?? 'warn', accesslog: { disabled: true } },
        storage: { filesystem: { rootdirectory: storageRoot } },
        http,
      };
      if (options.htpasswd) {
        const path = join(dir, 'htpasswd');
        writeHtpasswd(path, options.htpasswd.users);
        config.auth = { htpasswd: { realm: options.htpasswd.realm ?? 'oras-test-registry', path } };
      } else if (options.token) {
        const issuer = options.token;
        const rootcertbundle = join(dir, 'token-issuer.crt');
        writeFileSync(rootcertbundle, issuer.certificatePem);
        config.auth = { token: { realm: issuer.realm, service: issuer.service, issuer: issuer.issuer, rootcertbundle } };
      }
      const configFile = join(dir, 'config.yml');
      writeFileSync(configFile, stringify(config));
      const spawned = spawn(binary, ['serve', configFile], {
        env: { PATH: process.env.PATH, ...options.env, REGISTRY_HTTP_ADDR: `127.0.0.1:${port}` },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = spawned;
      spawned.stdout!.on('data', (d) => { output += d; });
      spawned.stderr!.on('data', (d) => { output += d; });
      const registry = new Distribution(`127.0.0.1:${port}`, dir, spawned, () => output, storageRoot, options.tls ? 'https' : 'http', caPem);
      try {
        await waitForPort(port, spawned, () => output);
      } catch (err) {
        await registry.stop();
        throw err;
      }
      return registry;
    } catch (err) {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private constructor(
    /** `127.0.0.1:<port>` */
    public readonly host: string,
    /** Scratch directory of this registry (config, htpasswd, certificates; storage in `data/` unless storageRoot was given). */
    public readonly dir: string,
    private readonly child: ChildProcess,
    /** Everything the registry printed so far. */
    public readonly log: () => string,
    /** The filesystem storage rootdirectory (the parent of `docker/`). */
    public readonly storageRoot: string,
    /** `https` when started with `tls: true`. */
    public readonly scheme: 'http' | 'https',
    /** PEM of the self-signed certificate the registry serves (its own CA), when started with `tls: true`. */
    public readonly caPem: string | undefined,
  ) {}

  /** `<scheme>://<host>` */
  public get url(): string {
    return `${this.scheme}://${this.host}`;
  }

  public async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

import { ChildProcess, spawn } from 'child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import { AddressInfo, createServer, connect } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { requirePeer } from './peers';

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
}

/**
 * Debian's docker-registry (CNCF distribution 2.8) on a free loopback port,
 * storing into a temporary directory that is removed on stop().
 */
export class Distribution {
  public static async start(options: DistributionOptions = {}): Promise<Distribution> {
    const binary = requirePeer('docker-registry');
    const dir = mkdtempSync(join(tmpdir(), 'oras-distribution-'));
    mkdirSync(join(dir, 'data'));
    const port = await freePort();
    const config = join(dir, 'config.yml');
    writeFileSync(config, [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'data')}`,
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'));
    const child = spawn(binary, ['serve', config], {
      env: { PATH: process.env.PATH, ...options.env, REGISTRY_HTTP_ADDR: `127.0.0.1:${port}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (d) => { output += d; });
    child.stderr!.on('data', (d) => { output += d; });
    const registry = new Distribution(`127.0.0.1:${port}`, dir, child, () => output);
    try {
      await waitForPort(port, child, () => output);
    } catch (err) {
      await registry.stop();
      throw err;
    }
    return registry;
  }

  private constructor(
    /** `127.0.0.1:<port>` */
    public readonly host: string,
    /** Scratch directory of this registry (storage in `data/`). */
    public readonly dir: string,
    private readonly child: ChildProcess,
    /** Everything the registry printed so far. */
    public readonly log: () => string,
  ) {}

  public async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

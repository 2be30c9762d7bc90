import { ChildProcess, spawn } from 'child_process';
import { join } from 'path';
import * as grpc from '@grpc/grpc-js';
import { ControllerService, IdentityService, NodeService } from '../../../runtime/csi/protocol';
import { freePort } from '../../util/distribution';
import { request } from '../../util/http';

export const bundle = join(__dirname, '..', '..', '..', 'runtime', 'build', 'oras-runtime.cjs');

/**
 * The plugin process: our bundle serving CSI on `<dir>/csi.sock`, with `<dir>` as the kubelet's root directory (targets in `<dir>/pods/`).
 * `controllerOnly` starts it as the provisioner Deployment does: `--controller` without the Node service.
 */
export class Plugin {
  public static async start(dir: string, extra: string[] = [], controllerOnly = false): Promise<Plugin> {
    const socket = join(dir, 'csi.sock');
    const metricsPort = await freePort();
    const node = controllerOnly ? ['--controller'] : ['--node-id', 'node-1', '--cache-dir', join(dir, 'data'), '--kubelet-dir', dir];
    const child = spawn(process.execPath, [bundle, 'csi', '--endpoint', `unix://${socket}`, ...node, '--metrics-port', String(metricsPort),
      // Tests stop plugins with volumes still published; they drain only when a test asks.
      ...(extra.includes('--drain-timeout') ? [] : ['--drain-timeout', '0']), ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    const plugin = new Plugin(child, socket, metricsPort);
    for (let i = 0; i < 200 && !plugin.log.includes('"event":"listening"') && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 25));
    if (!plugin.log.includes('"event":"listening"')) throw new Error(`the plugin did not start: ${plugin.log}`);
    return plugin;
  }

  public log = '';
  /** The exit code, or the signal that ended the process. */
  public readonly exited: Promise<number | NodeJS.Signals>;
  private readonly identity: grpc.Client;
  private readonly node: grpc.Client;
  private readonly controller: grpc.Client;
  private constructor(public readonly child: ChildProcess, public readonly socket: string, public readonly metricsPort: number) {
    child.stdout!.on('data', (d) => { this.log += d; });
    child.stderr!.on('data', (d) => { this.log += d; });
    // 'close', not 'exit': by then everything the plugin wrote has been read into the log.
    this.exited = new Promise((resolve) => child.once('close', (code, signal) => resolve(code ?? signal!)));
    const Identity = grpc.makeGenericClientConstructor(IdentityService, 'Identity');
    const Node = grpc.makeGenericClientConstructor(NodeService, 'Node');
    const Controller = grpc.makeGenericClientConstructor(ControllerService, 'Controller');
    this.controller = new Controller(`unix://${socket}`, grpc.credentials.createInsecure());
    this.identity = new Identity(`unix://${socket}`, grpc.credentials.createInsecure());
    this.node = new Node(`unix://${socket}`, grpc.credentials.createInsecure());
  }

  public call(service: 'identity' | 'node' | 'controller', method: string, body: object = {}): Promise<any> {
    const client = { identity: this.identity, node: this.node, controller: this.controller }[service] as any;
    return new Promise((resolve, reject) => client[method](body, (err: grpc.ServiceError | null, res: any) => (err ? reject(err) : resolve(res))));
  }

  public async metric(name: string): Promise<number> {
    const text = (await request(`http://127.0.0.1:${this.metricsPort}/metrics`)).body.toString();
    return Number(new RegExp(`^${name} (\\d+(\\.\\d+)?)$`, 'm').exec(text)?.[1] ?? NaN);
  }

  /** The JSON events the plugin logged under `name`. */
  public events(name: string): Record<string, unknown>[] {
    return this.log.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line)).filter((e) => e.event === name);
  }

  public async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill(signal);
      await this.exited;
    }
    this.identity.close();
    this.node.close();
    this.controller.close();
  }
}

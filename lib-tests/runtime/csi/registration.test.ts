import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, watch } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { PassThrough } from 'stream';
import * as grpc from '@grpc/grpc-js';
import { Testing } from 'cdk8s';
import { Plugin } from './plugin';
import { RegistrationService } from '../../../runtime/csi/protocol';
import { PluginRegistration } from '../../../runtime/csi/registration';
import { runCsi } from '../../../runtime/csi/run';
import { JsonReporter } from '../../../runtime/oci/progress';
import { OrasCsiDriver } from '../../../src';
import { freePort } from '../../util/distribution';
import { request } from '../../util/http';

/** Where the kubelet would reach the plugin: the host path the DaemonSet passes. */
const HOST_SOCKET = '/var/lib/kubelet/plugins/csi.oras.land/csi.sock';
const Registration = grpc.makeGenericClientConstructor(RegistrationService, 'Registration');

/** The kubelet's plugin watcher, as far as it talks to one registration socket. */
class PluginWatcher {
  private readonly client: any;
  constructor(socket: string) {
    // The kubelet dials each registration socket afresh.
    this.client = new Registration(`unix://${socket}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  }

  public getInfo(): Promise<any> {
    return this.call('GetInfo', {});
  }

  public notify(registered: boolean, error = ''): Promise<any> {
    return this.call('NotifyRegistrationStatus', { plugin_registered: registered, error });
  }

  public close(): void {
    this.client.close();
  }

  private call(method: string, body: object): Promise<any> {
    return new Promise((resolve, reject) => {
      this.client[method](body, { deadline: Date.now() + 5000 }, (err: Error | null, res: any) => (err ? reject(err) : resolve(res)));
    });
  }
}

describe('kubelet plugin registration by the node plugin (what node-driver-registrar does)', () => {
  let dir: string;
  let registry: string;
  let regSocket: string;
  let plugin: Plugin;
  let watcher: PluginWatcher;
  const start = () => Plugin.start(dir, ['--registration-dir', registry, '--kubelet-registration-path', HOST_SOCKET]);

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'oras-csi-reg-'));
    registry = join(dir, 'plugins_registry');
    mkdirSync(registry);
    regSocket = join(registry, 'csi.oras.land-reg.sock');
    plugin = await start();
    watcher = new PluginWatcher(regSocket);
  });
  afterEach(async () => {
    watcher.close();
    await plugin.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('serves <dir>/<driver>-reg.sock, owner-only, once the CSI socket serves; GetInfo names the driver and its host endpoint', async () => {
    expect(statSync(regSocket).isSocket()).toBe(true);
    expect(statSync(regSocket).mode & 0o777).toBe(0o600);
    expect(statSync(plugin.socket).mode & 0o777).toBe(0o600);
    expect(plugin.events('listening')).toEqual([expect.objectContaining({ registrationSocket: regSocket })]);
    expect(await watcher.getInfo()).toEqual({ type: 'CSIPlugin', name: 'csi.oras.land', endpoint: HOST_SOCKET, supported_versions: ['1.0.0'] });
    expect(plugin.events('registration')).toEqual([expect.objectContaining({ status: 'requested', socket: regSocket, endpoint: HOST_SOCKET })]);
  });

  test('the registration socket appears only once the CSI socket serves', async () => {
    await plugin.stop();
    expect(existsSync(plugin.socket)).toBe(false);
    const appeared = new Promise<boolean>((resolve) => {
      const watcherOfDir = watch(registry, (_, name) => {
        if (name !== 'csi.oras.land-reg.sock' || !existsSync(regSocket)) return;
        watcherOfDir.close();
        resolve(existsSync(plugin.socket));
      });
    });
    const starting = start();
    expect(await appeared).toBe(true);
    plugin = await starting;
  });

  test('the driver name of --driver-name names the socket and the info', async () => {
    await plugin.stop();
    plugin = await Plugin.start(dir, ['--driver-name', 'artifacts.example.com', '--registration-dir', registry, '--kubelet-registration-path', '/k/plugins/a/csi.sock']);
    const other = new PluginWatcher(join(registry, 'artifacts.example.com-reg.sock'));
    try {
      expect(await other.getInfo()).toEqual({ type: 'CSIPlugin', name: 'artifacts.example.com', endpoint: '/k/plugins/a/csi.sock', supported_versions: ['1.0.0'] });
    } finally {
      other.close();
    }
  });

  test('registered: logged, and the plugin keeps serving', async () => {
    await watcher.getInfo();
    expect(await watcher.notify(true)).toEqual({});
    await new Promise((r) => setTimeout(r, 300));
    expect(plugin.child.exitCode).toBeNull();
    expect(plugin.events('registration').map((e) => e.status)).toEqual(['requested', 'registered']);
    expect(await plugin.call('identity', 'Probe')).toEqual({ ready: { value: true } });
    expect(await watcher.getInfo()).toMatchObject({ name: 'csi.oras.land' });
  });

  test('not registered: logs the kubelet\'s error and exits 1, so that the container restarts', async () => {
    await watcher.getInfo();
    expect(await watcher.notify(false, 'plugin csi.oras.land is already registered with a higher version')).toEqual({});
    expect(await plugin.exited).toBe(1);
    expect(plugin.events('registration').at(-1)).toEqual(expect.objectContaining({
      status: 'failed',
      error: 'plugin csi.oras.land is already registered with a higher version',
      message: expect.stringMatching(/exiting so that the container restarts/),
    }));
    expect(plugin.events('stopping')).toEqual([expect.objectContaining({ code: 1 })]);
  });

  test('SIGTERM removes the registration socket (the kubelet deregisters the driver) and exits 0', async () => {
    expect(existsSync(regSocket)).toBe(true);
    await plugin.stop('SIGTERM');
    expect(await plugin.exited).toBe(0);
    expect(existsSync(regSocket)).toBe(false);
  });

  test('SIGINT too', async () => {
    await plugin.stop('SIGINT');
    expect(await plugin.exited).toBe(0);
    expect(existsSync(regSocket)).toBe(false);
  });

  test('the stale socket of a killed plugin is replaced at start', async () => {
    await plugin.stop('SIGKILL');
    expect(statSync(regSocket).isSocket()).toBe(true);
    const stale = statSync(regSocket, { bigint: true }).ctimeNs;
    await expect(watcher.getInfo()).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    plugin = await start();
    expect(statSync(regSocket, { bigint: true }).ctimeNs).toBeGreaterThan(stale);
    const fresh = new PluginWatcher(regSocket);
    try {
      expect(await fresh.getInfo()).toMatchObject({ name: 'csi.oras.land', endpoint: HOST_SOCKET });
    } finally {
      fresh.close();
    }
  });

  test('a missing registration directory stops the start with the reason, and leaves no socket behind', async () => {
    await plugin.stop();
    const args = ['--endpoint', `unix://${join(dir, 'csi.sock')}`, '--node-id', 'n', '--cache-dir', join(dir, 'data'), '--metrics-port', String(await freePort()),
      '--registration-dir', join(dir, 'missing'), '--kubelet-registration-path', HOST_SOCKET];
    await expect(runCsi(args)).rejects.toThrow(`cannot serve ${join(dir, 'missing', 'csi.oras.land-reg.sock')}: ${join(dir, 'missing')} is not a directory`);
    expect(existsSync(join(dir, 'csi.sock'))).toBe(false);
  });
});

describe('the DaemonSet\'s plugin container, as OrasCsiDriver writes it', () => {
  test('registers the driver with its host socket and answers /healthz', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oras-csi-reg-'));
    const chart = Testing.chart();
    new OrasCsiDriver(chart, 'Driver');
    const daemonSet = Testing.synth(chart).find((m) => m.kind === 'DaemonSet');
    const [command, ...args] = daemonSet.spec.template.spec.containers[0].args as string[];
    expect(command).toBe('csi');
    // The container's paths and ports, moved to this test's own.
    const [metricsPort, healthPort] = [await freePort(), await freePort()];
    const local: Record<string, string> = {
      '/registration': join(dir, 'plugins_registry'),
      'unix:///csi/csi.sock': `unix://${join(dir, 'csi.sock')}`,
      '/var/lib/oras-csi': join(dir, 'data'),
      '$(NODE_NAME)': 'node-1',
      '9809': String(metricsPort),
      '9808': String(healthPort),
    };
    mkdirSync(join(dir, 'plugins_registry'));
    const plugin = await Plugin.start(dir, args.map((a) => local[a] ?? a));
    const watcher = new PluginWatcher(join(dir, 'plugins_registry', 'csi.oras.land-reg.sock'));
    try {
      expect(await watcher.getInfo()).toEqual({ type: 'CSIPlugin', name: 'csi.oras.land', endpoint: HOST_SOCKET, supported_versions: ['1.0.0'] });
      expect(await request(`http://127.0.0.1:${healthPort}/healthz`)).toMatchObject({ status: 200, body: Buffer.from('ok') });
    } finally {
      watcher.close();
      await plugin.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('PluginRegistration', () => {
  test('answers GetInfo; calls onFailure with the kubelet\'s error after answering; stop() removes the socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oras-csi-reg-'));
    const log = new PassThrough();
    let output = '';
    log.on('data', (d) => { output += d; });
    const failures: string[] = [];
    const registration = await PluginRegistration.start({
      dir, driverName: 'csi.oras.land', endpoint: HOST_SOCKET, reporter: new JsonReporter(log), onFailure: (error) => failures.push(error),
    });
    const watcher = new PluginWatcher(registration.socket);
    try {
      expect(registration.socket).toBe(join(dir, 'csi.oras.land-reg.sock'));
      expect(await watcher.getInfo()).toEqual({ type: 'CSIPlugin', name: 'csi.oras.land', endpoint: HOST_SOCKET, supported_versions: ['1.0.0'] });
      expect(await watcher.notify(true)).toEqual({});
      expect(failures).toEqual([]);
      expect(await watcher.notify(false, 'boom')).toEqual({});
      await new Promise((r) => setImmediate(r));
      expect(failures).toEqual(['boom']);
      expect(output).toMatch(/"event":"registration","status":"failed","error":"boom"/);
    } finally {
      watcher.close();
      await registration.stop();
    }
    expect(existsSync(registration.socket)).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });
});

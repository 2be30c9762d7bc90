import { mkdtempSync, renameSync, rmSync } from 'fs';
import { createServer, Server, Socket } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import * as grpc from '@grpc/grpc-js';
import { Plugin } from './plugin';
import { probeLiveness } from '../../../runtime/csi/health';
import { IdentityService, unary } from '../../../runtime/csi/protocol';
import { bindUnixSocket } from '../../../runtime/csi/socket';
import { freePort } from '../../util/distribution';
import { request } from '../../util/http';

/** A listener on `path` that accepts connections and never answers. */
async function silentListener(path: string): Promise<{ server: Server; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { server, sockets };
}

describe('/healthz of the node plugin (what the livenessprobe sidecar does)', () => {
  let dir: string;
  let plugin: Plugin;
  let healthPort: number;
  const healthz = () => request(`http://127.0.0.1:${healthPort}/healthz`);

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'oras-csi-health-'));
    healthPort = await freePort();
    plugin = await Plugin.start(dir, ['--health-port', String(healthPort)]);
  });
  afterEach(async () => {
    await plugin.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('200 "ok" while the CSI socket answers Probe; metrics stay on their own port', async () => {
    expect(await healthz()).toMatchObject({ status: 200, body: Buffer.from('ok') });
    expect(plugin.events('listening')).toEqual([expect.objectContaining({ healthPort, metricsPort: plugin.metricsPort })]);
    expect(await plugin.metric('oras_csi_pulls_total')).toBe(0);
    expect((await request(`http://127.0.0.1:${plugin.metricsPort}/healthz`)).status).toBe(404);
    expect((await request(`http://127.0.0.1:${healthPort}/metrics`)).status).toBe(404);
  });

  test('500 with the reason while the kubelet cannot reach the socket; 200 again once it can', async () => {
    renameSync(plugin.socket, `${plugin.socket}.moved`);
    const failed = await healthz();
    expect(failed.status).toBe(500);
    expect(failed.body.toString()).toMatch(new RegExp(`^CSI Probe on ${plugin.socket} failed: 14 UNAVAILABLE`));
    expect(plugin.events('unhealthy')).toEqual([expect.objectContaining({ reason: failed.body.toString() })]);
    renameSync(`${plugin.socket}.moved`, plugin.socket);
    expect((await healthz()).status).toBe(200);
  });

  test('500 within the probe deadline when the socket accepts but never answers', async () => {
    rmSync(plugin.socket);
    const { server, sockets } = await silentListener(plugin.socket);
    try {
      const started = Date.now();
      const failed = await healthz();
      expect(failed.status).toBe(500);
      expect(failed.body.toString()).toMatch(/DEADLINE_EXCEEDED/);
      // Inside the DaemonSet's probe timeout (3 s).
      expect(Date.now() - started).toBeLessThan(2500);
    } finally {
      sockets.forEach((s) => s.destroy());
      server.close();
    }
  });

  test('without --health-port there is no /healthz; the same port for both serves both', async () => {
    await plugin.stop();
    plugin = await Plugin.start(dir);
    expect((await request(`http://127.0.0.1:${plugin.metricsPort}/healthz`)).status).toBe(404);
    await plugin.stop();
    const port = await freePort();
    plugin = await Plugin.start(dir, ['--metrics-port', String(port), '--health-port', String(port)]);
    expect((await request(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    expect((await request(`http://127.0.0.1:${port}/metrics`)).body.toString()).toMatch(/^oras_csi_pulls_total 0$/m);
  });
});

describe('probeLiveness', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'oras-csi-probe-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function identityServer(probe: object): Promise<grpc.Server> {
    const server = new grpc.Server();
    server.addService(IdentityService, {
      GetPluginInfo: unary(() => ({ name: 'x' })),
      GetPluginCapabilities: unary(() => ({ capabilities: [] })),
      Probe: unary(() => probe),
    });
    await bindUnixSocket(server, join(dir, 'csi.sock'));
    return server;
  }

  test.each([
    [{ ready: { value: true } }],
    // CSI: a plugin that leaves ready out is ready.
    [{}],
  ])('resolves when Probe answers %j', async (answer) => {
    const server = await identityServer(answer);
    try {
      await expect(probeLiveness(join(dir, 'csi.sock'))).resolves.toBeUndefined();
    } finally {
      server.forceShutdown();
    }
  });

  test('rejects when the driver says it is not ready', async () => {
    const server = await identityServer({ ready: { value: false } });
    try {
      await expect(probeLiveness(join(dir, 'csi.sock'))).rejects.toThrow('the driver answered CSI Probe but is not ready');
    } finally {
      server.forceShutdown();
    }
  });

  test('rejects when nothing listens', async () => {
    await expect(probeLiveness(join(dir, 'none.sock'))).rejects.toThrow(/UNAVAILABLE/);
  });

  test('rejects after its deadline when the socket never answers', async () => {
    const { server, sockets } = await silentListener(join(dir, 'silent.sock'));
    try {
      const started = Date.now();
      await expect(probeLiveness(join(dir, 'silent.sock'), 200)).rejects.toThrow(/DEADLINE_EXCEEDED/);
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      sockets.forEach((s) => s.destroy());
      server.close();
    }
  });
});

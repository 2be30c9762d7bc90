import { rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { NodeCache } from './cache';
import { CsiMetrics } from './metrics';
import { OrasNode } from './node';
import { ControllerService, CsiError, IdentityService, NodeService } from './protocol';
import { UsageError } from '../cli/command';
import { parseFlags, positiveInteger } from '../cli/registry-flags';
import { RUNTIME_VERSION } from '../cli/version';
import { defaultReporter } from '../oci/progress';

/** A unary handler that maps thrown CsiErrors to their status codes. */
function unary(work: (request: any) => Promise<object> | object): grpc.handleUnaryCall<any, any> {
  return (call, callback) => {
    Promise.resolve().then(() => work(call.request)).then(
      (response) => callback(null, response),
      (err: Error) => callback({ code: err instanceof CsiError ? err.code : grpc.status.INTERNAL, details: err.message }),
    );
  };
}

function parseSize(text: string): number {
  const match = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(text);
  if (!match) throw new UsageError(`--cache-max-size "${text}" must be a number of bytes, optionally with Ki, Mi, Gi or Ti`);
  return Number(match[1]) * { '': 1, 'Ki': 1024, 'Mi': 1024 ** 2, 'Gi': 1024 ** 3, 'Ti': 1024 ** 4 }[match[2] ?? '']!;
}

/**
 * The CSI node plugin: Identity and Node services over a unix socket, the
 * node cache under --cache-dir, and Prometheus metrics. Bundled apart
 * (oras-runtime-csi.cjs) with its gRPC library.
 */
export async function runCsi(args: string[]): Promise<number> {
  const { values } = parseFlags({
    args,
    options: {
      'endpoint': { type: 'string' },
      'node-id': { type: 'string' },
      'cache-dir': { type: 'string' },
      'driver-name': { type: 'string' },
      'metrics-port': { type: 'string' },
      'cache-max-size': { type: 'string' },
      'share-cache-across-namespaces': { type: 'boolean' },
    },
  });
  const endpoint = values.endpoint ?? '';
  if (!endpoint.startsWith('unix://')) throw new UsageError('--endpoint must be a unix socket such as unix:///csi/csi.sock');
  if (!values['node-id']) throw new UsageError('--node-id is required (the Kubernetes node name)');
  if (!values['cache-dir']) throw new UsageError('--cache-dir is required');
  const driverName = values['driver-name'] ?? 'csi.oras.land';
  const reporter = defaultReporter();
  const metrics = new CsiMetrics();
  const cache = new NodeCache(join(values['cache-dir'], 'cache'), parseSize(values['cache-max-size'] ?? '20Gi'));
  const node = new OrasNode({
    nodeId: values['node-id'], cache, stateDir: join(values['cache-dir'], 'state'), metrics, isolateNamespaces: !values['share-cache-across-namespaces'],
  });
  // Mount records first: the cache must not delete a tree that a pod still mounts.
  await node.open();
  await cache.open(node.mountedKeys);

  const server = new grpc.Server();
  server.addService(IdentityService, {
    GetPluginInfo: unary(() => ({ name: driverName, vendor_version: RUNTIME_VERSION })),
    GetPluginCapabilities: unary(() => ({ capabilities: [] })),
    Probe: unary(() => ({ ready: { value: true } })),
  });
  // No controller capability (UNKNOWN is none); a list, because Go clients treat an empty one as missing.
  server.addService(ControllerService, { ControllerGetCapabilities: unary(() => ({ capabilities: [{ rpc: { type: 'UNKNOWN' } }] })) });
  server.addService(NodeService, {
    NodePublishVolume: unary((r) => node.publish(r)),
    NodeUnpublishVolume: unary((r) => node.unpublish(r)),
    NodeGetCapabilities: unary(() => node.getCapabilities()),
    NodeGetInfo: unary(() => node.getInfo()),
    NodeGetVolumeStats: unary((r) => node.volumeStats(r)),
  });
  const socket = endpoint.replace(/^unix:\/\//, '');
  await rm(socket, { force: true });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));

  const metricsPort = positiveInteger(values['metrics-port'], '--metrics-port', 9809);
  const http = createServer((req, res) => {
    if (req.url === '/metrics') {
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' });
      res.end(metrics.render(cache.totalBytes));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => http.listen(metricsPort, resolve));
  reporter.event('listening', { endpoint, driver: driverName, version: RUNTIME_VERSION, metricsPort });

  await new Promise<void>((resolve) => {
    const stop = () => {
      reporter.event('stopping', {});
      http.close();
      server.tryShutdown(() => resolve());
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return 0;
}

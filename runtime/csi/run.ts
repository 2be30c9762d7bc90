import { createServer, Server, ServerResponse } from 'node:http';
import { isAbsolute, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { NodeCache } from './cache';
import { OrasController } from './controller';
import { probeLiveness } from './health';
import { CsiMetrics } from './metrics';
import { OrasNode } from './node';
import { ControllerService, IdentityService, NodeService, unary } from './protocol';
import { PluginRegistration } from './registration';
import { bindUnixSocket } from './socket';
import { KubeCalls, loadBundled } from '../cli/bundled';
import { UsageError } from '../cli/command';
import { caFileFlag, durationFlag, parseFlags, positiveInteger } from '../cli/registry-flags';
import { RUNTIME_VERSION } from '../cli/version';
import { defaultReporter, Reporter } from '../oci/progress';
import { sleep } from '../oci/retry';

type Route = (res: ServerResponse) => unknown;

/** An HTTP server on `port` that serves `routes` (path to handler) and 404 otherwise. */
function listenHttp(port: number, routes: Map<string, Route>): Promise<Server> {
  const server = createServer((req, res) => {
    const route = routes.get((req.url ?? '/').split('?')[0]);
    if (route) return void route(res);
    res.writeHead(404);
    res.end();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve(server));
  });
}

function parseSize(text: string): number {
  const match = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(text);
  if (!match) throw new UsageError(`--cache-max-size "${text}" must be a number of bytes, optionally with Ki, Mi, Gi or Ti`);
  return Number(match[1]) * { '': 1, 'Ki': 1024, 'Mi': 1024 ** 2, 'Gi': 1024 ** 3, 'Ti': 1024 ** 4 }[match[2] ?? '']!;
}

/**
 * After SIGTERM, keeps serving while volumes stay published, for up to
 * `timeoutMs`: the pods that use them are often deleted together with the
 * plugin (kubectl delete -f of a bundle), and the kubelet can unpublish only
 * while the driver is registered. Without this, such a pod would stay
 * Terminating until the plugin came back. A second signal ends it at once.
 */
async function drain(node: OrasNode | undefined, timeoutMs: number, reporter: Reporter): Promise<void> {
  if (!node || node.publishedVolumes === 0 || timeoutMs <= 0) return;
  reporter.event('draining', { published: node.publishedVolumes, timeoutSeconds: timeoutMs / 1000 });
  let interrupted = false;
  const interrupt = () => { interrupted = true; };
  process.once('SIGTERM', interrupt);
  process.once('SIGINT', interrupt);
  const deadline = Date.now() + timeoutMs;
  while (node.publishedVolumes > 0 && !interrupted && Date.now() < deadline) await sleep(250);
  process.off('SIGTERM', interrupt);
  process.off('SIGINT', interrupt);
  reporter.event('drained', { published: node.publishedVolumes });
}

/**
 * The CSI plugin over a unix socket: Identity, and the Node service (the
 * node cache under --cache-dir, Prometheus metrics, and optionally what the
 * node-driver-registrar and livenessprobe sidecars would do: kubelet plugin
 * registration and /healthz), the Controller service (--controller), or
 * both. Bundled apart (oras-runtime-csi.cjs) with its gRPC library.
 */
export async function runCsi(args: string[]): Promise<number> {
  const { values } = parseFlags({
    args,
    options: {
      'endpoint': { type: 'string' },
      'controller': { type: 'boolean' },
      'kubeconfig': { type: 'string' },
      'node-id': { type: 'string' },
      'cache-dir': { type: 'string' },
      'driver-name': { type: 'string' },
      'metrics-port': { type: 'string' },
      'health-port': { type: 'string' },
      'registration-dir': { type: 'string' },
      'kubelet-registration-path': { type: 'string' },
      'cache-max-size': { type: 'string' },
      'share-cache-across-namespaces': { type: 'boolean' },
      'kubelet-dir': { type: 'string' },
      'publish-timeout': { type: 'string' },
      'pull-timeout': { type: 'string' },
      'drain-timeout': { type: 'string' },
      'ca-file': { type: 'string', multiple: true },
    },
  });
  const endpoint = values.endpoint ?? '';
  if (!endpoint.startsWith('unix://')) throw new UsageError('--endpoint must be a unix socket such as unix:///csi/csi.sock');
  const controllerOnly = values.controller && values['node-id'] === undefined && values['cache-dir'] === undefined;
  if (!controllerOnly) {
    const also = values.controller ? ' to serve the Node service next to the Controller (or give neither for the Controller alone)' : '';
    if (!values['node-id']) throw new UsageError(`--node-id is required (the Kubernetes node name)${also}`);
    if (!values['cache-dir']) throw new UsageError(`--cache-dir is required${also}`);
  }
  if (values.kubeconfig !== undefined && !values.controller) throw new UsageError('--kubeconfig is for --controller (reading PVC annotations)');
  if (controllerOnly && values['registration-dir'] !== undefined) {
    throw new UsageError('kubelet registration is for the Node service: add --node-id and --cache-dir, or leave out --registration-dir');
  }
  const registrationDir = values['registration-dir'];
  const registrationPath = values['kubelet-registration-path'];
  if ((registrationDir === undefined) !== (registrationPath === undefined)) {
    throw new UsageError('--registration-dir and --kubelet-registration-path go together: give both to register with the kubelet, or neither');
  }
  if (registrationPath !== undefined && !isAbsolute(registrationPath)) {
    throw new UsageError(`--kubelet-registration-path "${registrationPath}" must be the host path of the CSI socket, such as /var/lib/kubelet/plugins/csi.oras.land/csi.sock`);
  }
  const kubeletDir = values['kubelet-dir'] ?? '/var/lib/kubelet';
  if (!isAbsolute(kubeletDir)) throw new UsageError(`--kubelet-dir "${kubeletDir}" must be an absolute path, such as /var/lib/kubelet`);
  const publishTimeout = positiveInteger(values['publish-timeout'], '--publish-timeout', 90);
  // The kubelet gives NodePublishVolume 2 minutes; an answer after that is lost.
  if (publishTimeout >= 120) throw new UsageError(`--publish-timeout ${publishTimeout} must be below the kubelet's 120 seconds`);
  const pullTimeout = positiveInteger(values['pull-timeout'], '--pull-timeout', 1800);
  const drainMs = durationFlag(values['drain-timeout'], '--drain-timeout', '20s');
  const metricsPort = controllerOnly && values['metrics-port'] === undefined ? undefined : positiveInteger(values['metrics-port'], '--metrics-port', 9809);
  const healthPort = values['health-port'] === undefined ? undefined : positiveInteger(values['health-port'], '--health-port', 9808);
  const driverName = values['driver-name'] ?? 'csi.oras.land';
  const reporter = defaultReporter();
  const metrics = new CsiMetrics();
  const ca = caFileFlag(values['ca-file']);
  const cacheMaxSize = parseSize(values['cache-max-size'] ?? '20Gi');
  let cache: NodeCache | undefined;
  let node: OrasNode | undefined;
  if (!controllerOnly) {
    const cacheDir = values['cache-dir']!;
    cache = new NodeCache(join(cacheDir, 'cache'), cacheMaxSize);
    node = new OrasNode({
      nodeId: values['node-id']!,
      cache,
      stateDir: join(cacheDir, 'state'),
      metrics,
      isolateNamespaces: !values['share-cache-across-namespaces'],
      kubeletDir,
      publishTimeoutMs: publishTimeout * 1000,
      pullTimeoutMs: pullTimeout * 1000,
      reporter,
      ca,
    });
    // Mount records first: the cache must not delete a tree that a pod still mounts.
    await node.open();
    await cache.open(node.mountedKeys);
  }
  const kubeconfig = values.kubeconfig;
  const controller = values.controller ? new OrasController({
    ca,
    claimAnnotations: (namespace, name) => loadBundled<KubeCalls>('oras-runtime-kube.cjs', '../kube/client').claimAnnotations(namespace, name, kubeconfig),
  }) : undefined;

  const server = new grpc.Server();
  const log = { reporter };
  server.addService(IdentityService, {
    GetPluginInfo: unary(() => ({ name: driverName, vendor_version: RUNTIME_VERSION }), log),
    GetPluginCapabilities: unary(() => ({ capabilities: controller ? [{ service: { type: 'CONTROLLER_SERVICE' } }] : [] }), log),
    Probe: unary(() => ({ ready: { value: true } }), { reporter, errorsOnly: true }),
  });
  server.addService(ControllerService, controller ? {
    CreateVolume: unary((r) => controller.createVolume(r), log),
    DeleteVolume: unary((r) => controller.deleteVolume(r), log),
    ValidateVolumeCapabilities: unary((r) => controller.validateVolumeCapabilities(r), log),
    ControllerGetCapabilities: unary(() => controller.getCapabilities(), log),
  } : {
    // No controller capability (UNKNOWN is none); a list, because Go clients treat an empty one as missing.
    ControllerGetCapabilities: unary(() => ({ capabilities: [{ rpc: { type: 'UNKNOWN' } }] }), log),
  });
  if (node) {
    server.addService(NodeService, {
      NodePublishVolume: unary((r) => node.publish(r), log),
      NodeUnpublishVolume: unary((r) => node.unpublish(r), log),
      NodeGetCapabilities: unary(() => node.getCapabilities(), log),
      NodeGetInfo: unary(() => node.getInfo(), log),
      NodeGetVolumeStats: unary((r) => node.volumeStats(r), log),
    });
  }
  const socket = endpoint.replace(/^unix:\/\//, '');

  // Metrics and health share a server only when given the same port.
  const routesByPort = new Map<number, Map<string, Route>>();
  const addRoute = (port: number, path: string, route: Route) => routesByPort.set(port, (routesByPort.get(port) ?? new Map()).set(path, route));
  if (metricsPort !== undefined) {
    addRoute(metricsPort, '/metrics', (res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' });
      res.end(metrics.render(cache?.totalBytes ?? 0));
    });
  }
  if (healthPort !== undefined) {
    addRoute(healthPort, '/healthz', (res) => probeLiveness(socket).then(
      () => res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok'),
      (err: Error) => {
        reporter.event('unhealthy', { reason: err.message });
        res.writeHead(500, { 'Content-Type': 'text/plain' }).end(err.message);
      },
    ));
  }

  let exit!: (code: number) => void;
  const exited = new Promise<number>((resolve) => { exit = resolve; });
  const onSignal = () => exit(0);
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  const httpServers: Server[] = [];
  let registration: PluginRegistration | undefined;
  const stop = async () => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    // The registration first: the kubelet deregisters the driver before its socket goes.
    await registration?.stop();
    for (const http of httpServers) http.close();
    await new Promise<void>((done) => server.tryShutdown(() => done()));
  };
  try {
    await bindUnixSocket(server, socket);
    for (const [port, routes] of routesByPort) httpServers.push(await listenHttp(port, routes));
    if (registrationDir !== undefined && registrationPath !== undefined) {
      registration = await PluginRegistration.start({
        dir: registrationDir, driverName, endpoint: registrationPath, reporter, onFailure: () => exit(1),
      });
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const services = ['identity', ...(controller ? ['controller'] : []), ...(node ? ['node'] : [])];
  reporter.event('listening', { endpoint, driver: driverName, version: RUNTIME_VERSION, services, metricsPort, healthPort, registrationSocket: registration?.socket });

  const code = await exited;
  if (code === 0) await drain(node, drainMs, reporter);
  reporter.event('stopping', { code });
  await stop();
  return code;
}

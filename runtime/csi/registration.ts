import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { RegistrationService, unary } from './protocol';
import { bindUnixSocket } from './socket';
import { Reporter } from '../oci/progress';

export interface RegistrationOptions {
  /** The kubelet's `plugins_registry` directory, as this container sees it. */
  readonly dir: string;
  readonly driverName: string;
  /** The host path of the plugin's CSI socket, where the kubelet reaches it. */
  readonly endpoint: string;
  readonly reporter: Reporter;
  /** Called after the kubelet reported that it could not register the plugin. */
  readonly onFailure: (error: string) => void;
}

/**
 * Kubelet plugin registration (pluginregistration.v1), as
 * node-driver-registrar does it: the kubelet's plugin watcher finds
 * `<dir>/<driver>-reg.sock`, asks GetInfo, registers the CSI endpoint and
 * reports the outcome with NotifyRegistrationStatus. Removing the socket
 * deregisters the driver.
 */
export class PluginRegistration {
  /** Start it only once the CSI socket serves: the kubelet calls NodeGetInfo while it registers. */
  public static async start(options: RegistrationOptions): Promise<PluginRegistration> {
    const { driverName, endpoint, reporter } = options;
    const socket = join(resolve(options.dir), `${driverName}-reg.sock`);
    const server = new grpc.Server();
    server.addService(RegistrationService, {
      GetInfo: unary(() => {
        reporter.event('registration', { status: 'requested', socket, endpoint });
        return { type: 'CSIPlugin', name: driverName, endpoint, supported_versions: ['1.0.0'] };
      }),
      NotifyRegistrationStatus: unary((status: { plugin_registered: boolean; error: string }) => {
        if (status.plugin_registered) {
          reporter.event('registration', { status: 'registered', driver: driverName });
        } else {
          reporter.event('registration', { status: 'failed', error: status.error, message: 'the kubelet did not register the plugin; exiting so that the container restarts and tries again' });
          // After the answer is on its way.
          setImmediate(() => options.onFailure(status.error));
        }
        return {};
      }),
    });
    await bindUnixSocket(server, socket);
    return new PluginRegistration(server, socket);
  }

  private constructor(private readonly server: grpc.Server, public readonly socket: string) {}

  /** Removes the socket first, so that the kubelet deregisters the driver. */
  public async stop(): Promise<void> {
    await rm(this.socket, { force: true });
    await new Promise<void>((done) => this.server.tryShutdown(() => done()));
  }
}

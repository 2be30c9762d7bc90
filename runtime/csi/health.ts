import * as grpc from '@grpc/grpc-js';
import { IdentityService } from './protocol';

/** livenessprobe's default `--probe-timeout`. */
export const PROBE_TIMEOUT_MS = 1000;

const IdentityClient = grpc.makeGenericClientConstructor(IdentityService, 'Identity');

/**
 * What the livenessprobe sidecar does for each `/healthz`: a new connection
 * to the plugin's socket and a CSI Probe within `timeoutMs`. Rejects with the
 * reason when the plugin does not answer or is not ready.
 */
export async function probeLiveness(socket: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<void> {
  // A local pool: a fresh connection each time, never a shared one still backing off from an earlier failure.
  const client = new IdentityClient(`unix://${socket}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  let response: { ready?: { value: boolean } | null };
  try {
    response = await new Promise((resolve, reject) => {
      (client as any).Probe({}, { deadline: Date.now() + timeoutMs }, (err: Error | null, res: any) => (err ? reject(err) : resolve(res)));
    });
  } catch (err) {
    throw new Error(`CSI Probe on ${socket} failed: ${(err as Error).message}`);
  } finally {
    client.close();
  }
  // An absent ready means ready (CSI spec).
  if (response.ready?.value === false) throw new Error('the driver answered CSI Probe but is not ready');
}

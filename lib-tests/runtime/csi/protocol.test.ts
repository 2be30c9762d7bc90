import { PassThrough } from 'stream';
import * as grpc from '@grpc/grpc-js';
import { CsiError, unary } from '../../../runtime/csi/protocol';
import { Reporter } from '../../../runtime/oci/progress';

/** A reporter that keeps what it is told. */
class Recorder implements Reporter {
  public readonly events: Record<string, unknown>[] = [];
  public event(name: string, fields: Record<string, unknown>): void {
    this.events.push({ event: name, ...fields });
  }
  public track(): PassThrough {
    return new PassThrough();
  }
}

/** Calls a unary handler as grpc-js would, with only what it uses of the call. */
function invoke(handler: grpc.handleUnaryCall<any, any>, request: object, path = '/csi.v1.Node/NodePublishVolume') {
  return new Promise<{ err: Partial<grpc.ServiceError> | null; response: unknown }>((resolve) => {
    handler({ request, getPath: () => path } as unknown as grpc.ServerUnaryCall<any, any>, (err, response) => resolve({ err: err as any, response }));
  });
}

const secret = 'hunter2-never-logged';
const request = {
  volume_id: 'vol-1',
  target_path: '/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/models/mount',
  secrets: { '.dockerconfigjson': `{"auths":{"r.io":{"auth":"${Buffer.from(`u:${secret}`).toString('base64')}"}}}` },
  volume_context: { 'oras.artifact.reference': 'r.io/models:v1', 'csi.storage.k8s.io/serviceAccount.tokens': `{"aud":{"token":"${secret}"}}` },
};

describe('unary', () => {
  test('answers with the work\'s response and logs the call without its secrets', async () => {
    const reporter = new Recorder();
    expect(await invoke(unary(() => ({ done: true }), { reporter }), request)).toEqual({ err: null, response: { done: true } });
    expect(reporter.events).toEqual([{
      event: 'csi-call',
      method: 'NodePublishVolume',
      volumeId: 'vol-1',
      target: request.target_path,
      context: { 'oras.artifact.reference': 'r.io/models:v1' },
      code: 'OK',
      ms: expect.any(Number),
      message: undefined,
    }]);
    expect(JSON.stringify(reporter.events)).not.toMatch(/hunter2|dockerconfigjson|serviceAccount/);
  });

  test('a CsiError keeps its code; any other error is INTERNAL; both are logged with their message', async () => {
    const reporter = new Recorder();
    const refused = await invoke(unary(() => Promise.reject(new CsiError(grpc.status.NOT_FOUND, 'no such volume')), { reporter }), { volume_id: 'v', volume_path: '/p' });
    expect(refused.err).toEqual({ code: grpc.status.NOT_FOUND, details: 'no such volume' });
    const broken = await invoke(unary(() => {
      throw new Error('bug');
    }, { reporter }), {}, '/csi.v1.Identity/Probe');
    expect(broken.err).toEqual({ code: grpc.status.INTERNAL, details: 'bug' });
    expect(reporter.events).toEqual([
      expect.objectContaining({ method: 'NodePublishVolume', volumeId: 'v', target: '/p', code: 'NOT_FOUND', message: 'no such volume' }),
      expect.objectContaining({ method: 'Probe', code: 'INTERNAL', message: 'bug' }),
    ]);
  });

  test('errorsOnly logs failures only; without a log nothing is logged', async () => {
    const reporter = new Recorder();
    await invoke(unary(() => ({}), { reporter, errorsOnly: true }), {}, '/csi.v1.Identity/Probe');
    expect(reporter.events).toEqual([]);
    await invoke(unary(() => Promise.reject(new Error('down')), { reporter, errorsOnly: true }), {}, '/csi.v1.Identity/Probe');
    expect(reporter.events).toEqual([expect.objectContaining({ method: 'Probe', code: 'INTERNAL' })]);
    expect(await invoke(unary(() => ({ ok: 1 })), request)).toEqual({ err: null, response: { ok: 1 } });
  });
});

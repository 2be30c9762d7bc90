import { ChildProcess, spawn } from 'child_process';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { applyPatch, Operation } from 'fast-json-patch';
import { freePort, writeSelfSignedCertificate } from './distribution';
import { request } from './http';

const root = join(__dirname, '..', '..');
const bundle = join(root, 'runtime', 'build', 'oras-runtime.cjs');
/** The runtime image the test webhook injects unless told otherwise. */
export const WEBHOOK_RUNTIME_IMAGE = 'ghcr.io/cdk8s-oras/oras-runtime:9.9.9';

/** The running webhook: our bundle, serving a self-signed certificate on loopback. */
export class RunningWebhook {
  public static async start(runtimeImage = WEBHOOK_RUNTIME_IMAGE): Promise<RunningWebhook> {
    const dir = mkdtempSync(join(tmpdir(), 'oras-webhook-'));
    const ca = writeSelfSignedCertificate(join(dir, 'tls.crt'), join(dir, 'tls.key'));
    const port = await freePort();
    const child = spawn(process.execPath, [bundle, 'webhook', '--port', String(port), '--tls-cert', join(dir, 'tls.crt'), '--tls-key', join(dir, 'tls.key'),
      '--runtime-image', runtimeImage], { stdio: ['ignore', 'pipe', 'pipe'] });
    const webhook = new RunningWebhook(`https://127.0.0.1:${port}`, ca, child, dir);
    for (let i = 0; i < 100; i++) {
      if ((await webhook.get('/readyz').catch(() => undefined))?.status === 200) return webhook;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`the webhook did not become ready: ${webhook.log}`);
  }

  public log = '';
  private constructor(public readonly url: string, public readonly ca: string, public readonly child: ChildProcess, private readonly dir: string) {
    child.stdout!.on('data', (d) => { this.log += d; });
    child.stderr!.on('data', (d) => { this.log += d; });
  }

  public get(path: string) {
    return request(`${this.url}${path}`, { ca: this.ca });
  }

  public async post(body: unknown) {
    const response = await request(`${this.url}/mutate`, { method: 'POST', ca: this.ca, headers: { 'Content-Type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    return { status: response.status, body: JSON.parse(response.body.toString('utf8') || 'null') };
  }

  /** Sends an object for admission and returns the answer and the object with the patch applied. */
  public async admit(kind: 'Pod' | 'Job', object: any) {
    const { status, body } = await this.post({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: { uid: 'u-1', kind: { group: kind === 'Job' ? 'batch' : '', version: 'v1', kind }, operation: 'CREATE', namespace: 'team', object },
    });
    expect(status).toBe(200);
    expect(body.response.uid).toBe('u-1');
    const patch: Operation[] = body.response.patch ? JSON.parse(Buffer.from(body.response.patch, 'base64').toString('utf8')) : [];
    const patched = applyPatch(JSON.parse(JSON.stringify(object)), patch).newDocument;
    return { response: body.response, patched, patch };
  }

  public async stop(): Promise<number | null> {
    const exited = new Promise<number | null>((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    const code = await exited;
    rmSync(this.dir, { recursive: true, force: true });
    return code;
  }
}


import { randomBytes } from 'crypto';
import { applyPatch, Operation } from 'fast-json-patch';
import { annotatedPod, annotations, DEFAULTS, LocalWebhook, reviewOf } from './local-webhook';
import { review } from '../../../runtime/webhook/mutate';
import { eventually } from '../../util/eventually';

/**
 * Fuzzing of the AdmissionReview handler and of the HTTP server, bounded in
 * time. Every answer must be a 400 (or 413) or a well-formed AdmissionReview
 * for the same uid, never a 500, and the server must keep serving.
 * ORAS_FUZZ_SEED replays a run; a failure prints its seed.
 */
const SEED = Number(process.env.ORAS_FUZZ_SEED ?? Date.now() % 2 ** 31);
const HANDLER_MS = 1500;
const SERVER_MS = 2500;

/** mulberry32: small, seeded, good enough to pick inputs. */
class Random {
  private state: number;
  constructor(seed: number) { this.state = seed >>> 0; }
  public next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }
  public int(n: number): number { return Math.floor(this.next() * n); }
  public chance(p: number): boolean { return this.next() < p; }
  public pick<T>(items: readonly T[]): T { return items[this.int(items.length)]; }
}

const KEYS = ['apiVersion', 'kind', 'request', 'uid', 'object', 'metadata', 'name', 'generateName', 'annotations', 'spec', 'template',
  'containers', 'initContainers', 'volumes', 'command', 'args', 'env', 'envFrom', 'volumeMounts', 'mountPath', 'workingDir', 'image',
  'value', '__proto__', 'constructor', 'toString', ''];
const ANNOTATIONS = ['oras-cache', 'registry', 'input-uri', 'input-uri_1', 'output-uri', 'input-path', 'output-path', 'output-pipe', 'container',
  'oras-env', 'oras-container', 'unpack', 'debug', 'plain-http', 'insecure', 'input-timeout', 'failure-uri', 'bogus'];
const STRINGS = ['', 'Pod', 'Job', 'Service', 'admission.k8s.io/v1', 'AdmissionReview', 'oras-pull', 'oras-push', 'oras-runtime', 'app', 'c',
  '/', '/oras', '/oras/state/exit-code', '/oras/state/stdout.fifo', '/a/../oras', '/work', '/work/', 'work', '../..', 'log.txt',
  '1e21', '0', '-1', '1800', '999999999999999999999', 'true', 'false', 'yes', 'x/y:1', 'Bad:ref:x', 'ghcr.io', 'a'.repeat(300),
  '☃ \u0000 \ud800', 'step', 'pull', '--state', '/bin/sh', '/oras/bin/oras-wrap'];

function randomJson(random: Random, depth = 0): unknown {
  switch (random.int(depth > 4 ? 4 : 7)) {
    case 0: return random.pick([null, true, false]);
    case 1: return random.pick([0, -1, 1.5, 1e21, 2 ** 53, random.int(1000)]);
    case 2: return random.pick(STRINGS);
    case 3: return random.pick(KEYS);
    case 4: return Array.from({ length: random.int(4) }, () => randomJson(random, depth + 1));
    default: return Object.fromEntries(Array.from({ length: random.int(5) }, () => [
      random.chance(0.2) ? PREFIX_OF(random) : random.pick(KEYS), randomJson(random, depth + 1),
    ]));
  }
}

const PREFIX_OF = (random: Random) => Object.keys(annotations({ [random.pick(ANNOTATIONS)]: '' }))[0];

/** A review the API server could send: a Pod or a Job with some of the operator's annotations. */
function plausibleReview(random: Random) {
  const values: Record<string, string> = { [random.pick(['oras-cache', 'registry'])]: random.pick(['c', 'ghcr.io', 'r.example.com:5000']) };
  for (let i = random.int(5); i > 0; i--) values[random.pick(ANNOTATIONS)] = random.pick(STRINGS);
  if (random.chance(0.7)) values['output-uri'] = 'x/y:1';
  const pod = annotatedPod(values, random.chance(0.3) ? {
    containers: [
      { name: 'app', command: ['sh'], workingDir: '/w' }, { name: random.pick(['b', 'oras-push']), command: ['y'] },
    ],
  } : {});
  const object = random.chance(0.3)
    ? { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j', annotations: pod.metadata.annotations }, spec: { template: { spec: pod.spec } } }
    : pod;
  return reviewOf(object, `u-${random.int(1e6)}`);
}

/** Changes one to three places of `value` at random: drop, retype, or replace them. */
function mutate(random: Random, value: unknown): unknown {
  const copy = JSON.parse(JSON.stringify(value));
  for (let n = 1 + random.int(3); n > 0; n--) {
    const places: [Record<string, unknown> | unknown[], string | number][] = [];
    const walk = (node: unknown) => {
      if (typeof node !== 'object' || node === null) return;
      for (const key of Object.keys(node)) {
        const k = Array.isArray(node) ? Number(key) : key;
        places.push([node as any, k]);
        walk((node as any)[k]);
      }
    };
    walk(copy);
    if (places.length === 0) return randomJson(random);
    const [parent, key] = random.pick(places);
    const old = (parent as any)[key];
    switch (random.int(5)) {
      case 0: if (Array.isArray(parent)) parent.splice(key as number, 1); else delete parent[key]; break;
      case 1: (parent as any)[key] = [old]; break;
      case 2: (parent as any)[key] = random.pick([null, 7, '', {}, []]); break;
      case 3: (parent as any)[key] = random.pick(STRINGS); break;
      default: (parent as any)[key] = randomJson(random);
    }
  }
  return copy;
}

/** What is wrong with `status` and `body` as the answer to `sent`, if anything. */
function problemWith(sent: unknown, status: number, body: any): string | undefined {
  if (status === 400 || status === 413) return typeof body?.error === 'string' ? undefined : `a ${status} without an error message`;
  if (status !== 200) return `HTTP ${status}`;
  const uid = (sent as any)?.request?.uid;
  const response = body?.response;
  if (body?.apiVersion !== 'admission.k8s.io/v1' || body?.kind !== 'AdmissionReview' || typeof response?.allowed !== 'boolean') return 'not an AdmissionReview';
  if (response.uid !== uid || typeof uid !== 'string') return `uid ${JSON.stringify(response.uid)} answers ${JSON.stringify(uid)}`;
  if (!response.allowed) {
    return response.status?.code === 400 && /^cdk8s-oras: \S/.test(response.status.message) ? undefined : `a denial ${JSON.stringify(response.status)}`;
  }
  if (!response.patch) return undefined;
  let prepared: any;
  try {
    const patch: Operation[] = JSON.parse(Buffer.from(response.patch, 'base64').toString());
    prepared = applyPatch(JSON.parse(JSON.stringify((sent as any).request.object)), patch, true).newDocument;
  } catch (err) {
    return `a patch that does not apply: ${(err as Error).message}`;
  }
  const again = review({ ...(sent as any), request: { ...(sent as any).request, object: prepared } }, defaults).body as any;
  return again.response?.allowed === true && !again.response.patch ? undefined : `the prepared object is not left alone: ${JSON.stringify(again.response)}`;
}

const defaults = DEFAULTS;

function jsonOrUndefined(text: string | Buffer | undefined): any {
  try {
    return JSON.parse(String(text));
  } catch {
    return undefined;
  }
}

function input(random: Random): unknown {
  const choice = random.int(4);
  if (choice === 0) return randomJson(random);
  if (choice === 1) return plausibleReview(random);
  return mutate(random, plausibleReview(random));
}

describe(`fuzzing the webhook (ORAS_FUZZ_SEED=${SEED})`, () => {
  test('the handler answers any JSON with a 400 or an AdmissionReview for the same uid', () => {
    const random = new Random(SEED);
    const problems: string[] = [];
    const seen = { malformed: 0, denied: 0, patched: 0, unchanged: 0 };
    const deadline = Date.now() + HANDLER_MS;
    while (Date.now() < deadline && problems.length < 5) {
      const sent = input(random);
      try {
        const result = review(sent, defaults);
        seen[result.outcome]++;
        const problem = problemWith(sent, result.status, result.body);
        if (problem) problems.push(`${problem}\n  for ${JSON.stringify(sent)}`);
      } catch (err) {
        problems.push(`threw ${(err as Error).stack}\n  for ${JSON.stringify(sent)}`);
      }
    }
    expect(problems).toEqual([]);
    // The inputs reach every branch, or the fuzzing proves little.
    expect(Object.values(seen).every((n) => n > 0)).toBe(true);
  });

  test('the server keeps answering random, mutated, oversized, byte-garbage, slow and aborted requests', async () => {
    const webhook = await LocalWebhook.start();
    const random = new Random(SEED + 1);
    const problems: string[] = [];
    let aborted = 0;
    let oversized = 0;
    /** The request for `text` in three writes; `missing` bytes more are announced than sent. */
    const inPieces = (text: string, missing = 0) => {
      const cut = random.int(text.length);
      const head = `POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(text) + missing}\r\n\r\n`;
      return [head, text.slice(0, cut), text.slice(cut)];
    };

    const once = async (): Promise<void> => {
      const sent = input(random);
      const text = JSON.stringify(sent) ?? 'null';
      switch (random.int(8)) {
        case 0: { // random bytes, or a valid review with bytes flipped
          const bytes = random.chance(0.5) ? randomBytes(random.int(2048)) : Buffer.from(text);
          for (let i = random.int(4); i > 0 && bytes.length > 0; i--) bytes[random.int(bytes.length)] = random.int(256);
          const response = await webhook.post(bytes);
          if (response.status !== 200 && response.status !== 400) problems.push(`HTTP ${response.status} for bytes`);
          else if (response.status === 400 && typeof jsonOrUndefined(response.body)?.error !== 'string') problems.push('a 400 without an error for bytes');
          return;
        }
        case 1: { // not even HTTP (a NUL cannot start a method): Node answers 400 and closes
          const { answer } = await webhook.raw([Buffer.concat([Buffer.of(0), randomBytes(random.int(512))])]);
          if (answer !== '' && !answer.startsWith('HTTP/1.1 400')) problems.push(`not HTTP, answered ${answer.slice(0, 40)}`);
          return;
        }
        case 2: { // slow, then abandoned
          aborted++;
          await webhook.raw(inPieces(text, 1), { pauseMs: 5 + random.int(40), abort: true });
          return;
        }
        case 3: { // slow but complete
          const { answer, error } = await webhook.raw(inPieces(text), { pauseMs: random.int(30) });
          const [head, body] = answer.split('\r\n\r\n');
          const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head ?? '')?.[1]);
          const problem = error ? `slow request failed: ${error.message}` : problemWith(sent, status, jsonOrUndefined(body));
          if (problem) problems.push(`${problem}\n  for a slow ${text.slice(0, 300)}`);
          return;
        }
        case 4: { // over 3 MiB, a few times
          if (oversized++ >= 2) return;
          const response = await webhook.post(Buffer.concat([Buffer.from(text), Buffer.alloc(3 * 1024 * 1024 + random.int(4096), 0x20)]));
          if (response.status !== 413) problems.push(`HTTP ${response.status} for an oversized body`);
          return;
        }
        default: {
          const response = await webhook.post(text);
          const problem = problemWith(sent, response.status, jsonOrUndefined(response.body));
          if (problem) problems.push(`${problem}\n  for ${text.slice(0, 300)}`);
        }
      }
    };

    try {
      const deadline = Date.now() + SERVER_MS;
      const worker = async () => {
        while (Date.now() < deadline && problems.length < 5) await once().catch((err) => problems.push(`the client failed: ${(err as Error).message}`));
      };
      await Promise.all(Array.from({ length: 6 }, worker));
      expect(problems).toEqual([]);

      expect((await webhook.get('/healthz')).status).toBe(200);
      const sent = reviewOf(annotatedPod({ 'oras-cache': 'c', 'output-uri': 'x/y:1' }), 'after-fuzz');
      const response = await webhook.post(JSON.stringify(sent));
      expect(response.status).toBe(200);
      expect(problemWith(sent, 200, JSON.parse(response.body.toString()))).toBeUndefined();
      expect(JSON.parse(response.body.toString()).response).toMatchObject({ uid: 'after-fuzz', allowed: true, patchType: 'JSONPatch' });
      expect(await eventually(() => webhook.count('aborted'), aborted)).toBe(aborted);
      expect(webhook.events.filter((e) => e.name === 'error')).toEqual([]);
    } finally {
      await webhook.stop();
    }
  });
});

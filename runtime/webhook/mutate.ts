import { AnnotationError, settingsFromAnnotations, WebhookDefaults, wantsOras } from './annotations';
import { injectOras, InjectionError, isInjected, PodSpecJson, PROVENANCE } from '../../src/injection';

/** One JSONPatch (RFC 6902) operation. */
export interface PatchOperation {
  readonly op: 'add' | 'replace' | 'remove';
  readonly path: string;
  readonly value?: unknown;
}

export type ReviewOutcome = 'patched' | 'unchanged' | 'denied';

export interface ReviewResult {
  /** HTTP status of the answer: 200, or 400 for a request that is not an AdmissionReview. */
  readonly status: number;
  readonly body: unknown;
  readonly outcome: ReviewOutcome | 'malformed';
}

/** A request body that is not an AdmissionReview v1 for a Pod or a Job. */
class MalformedRequest extends Error {}

interface KubeObject {
  metadata?: { name?: string; generateName?: string; annotations?: Record<string, string> };
  spec?: { template?: { metadata?: { annotations?: Record<string, string> }; spec?: PodSpecJson } } & PodSpecJson;
}

function escapePointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** A patch that turns `before` into `after`, one operation per changed top-level key. */
export function diffTopLevel(base: string, before: Record<string, unknown>, after: Record<string, unknown>): PatchOperation[] {
  const ops: PatchOperation[] = [];
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const path = `${base}/${escapePointer(key)}`;
    if (!(key in after)) {
      ops.push({ op: 'remove', path });
    } else if (!(key in before)) {
      ops.push({ op: 'add', path, value: after[key] });
    } else if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) {
      ops.push({ op: 'replace', path, value: after[key] });
    }
  }
  return ops;
}

/**
 * Decides one admission: prepares an annotated Pod, or the pod template of an
 * annotated Job (the Job's annotations apply to its template), with the same
 * injectOras that steps use at synth time. Already prepared objects and
 * objects without ORAS annotations pass unchanged.
 */
export function review(body: unknown, defaults: WebhookDefaults): ReviewResult {
  let uid: string;
  let kind: string;
  let object: KubeObject;
  try {
    const request = (body as { apiVersion?: string; kind?: string; request?: Record<string, unknown> });
    if (request?.apiVersion !== 'admission.k8s.io/v1' || request.kind !== 'AdmissionReview' || typeof request.request !== 'object' || request.request === null) {
      throw new MalformedRequest('expected an admission.k8s.io/v1 AdmissionReview with a request');
    }
    uid = String(request.request.uid ?? '');
    kind = String((request.request.kind as { kind?: string } | undefined)?.kind ?? '');
    object = request.request.object as KubeObject;
    if (!uid || typeof object !== 'object' || object === null) throw new MalformedRequest('the AdmissionReview request has no uid or no object');
    if (kind !== 'Pod' && kind !== 'Job') throw new MalformedRequest(`this webhook admits Pods and Jobs, not "${kind}"`);
  } catch (err) {
    return { status: 400, outcome: 'malformed', body: { error: (err as Error).message } };
  }

  const answer = (response: Record<string, unknown>, outcome: ReviewOutcome): ReviewResult => ({
    status: 200,
    outcome,
    body: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, ...response } },
  });

  const isJob = kind === 'Job';
  const spec = isJob ? object.spec?.template?.spec : object.spec;
  const annotations = isJob
    ? { ...object.spec?.template?.metadata?.annotations, ...object.metadata?.annotations }
    : { ...object.metadata?.annotations };
  if (!wantsOras(annotations) || !spec?.containers) return answer({ allowed: true }, 'unchanged');
  if (isInjected(spec)) return answer({ allowed: true }, 'unchanged');

  try {
    const settings = settingsFromAnnotations(annotations, spec, defaults);
    const app = spec.containers.find((c) => c.name === settings.container)!;
    const name = object.metadata?.name ?? object.metadata?.generateName ?? '';
    const prepared = injectOras(spec, {
      ...settings,
      output: settings.output && {
        ...settings.output,
        annotations: { [PROVENANCE.STEP]: name, ...(app.image ? { [PROVENANCE.IMAGE]: app.image } : {}), ...settings.output.annotations },
      },
    });
    const patch = diffTopLevel(isJob ? '/spec/template/spec' : '/spec', spec, prepared);
    return answer({ allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') }, 'patched');
  } catch (err) {
    if (err instanceof AnnotationError || err instanceof InjectionError) {
      return answer({ allowed: false, status: { code: 400, reason: 'BadRequest', message: `cdk8s-oras: ${err.message}` } }, 'denied');
    }
    return answer({ allowed: false, status: { code: 500, message: `cdk8s-oras: cannot prepare this ${kind}: ${(err as Error).message}` } }, 'denied');
  }
}

import { AdmissionRequest, decodeReview, MalformedObject, MalformedReview, podSpec, PodUnderReview, readPod } from './admission-request';
import { AnnotationError, PREFIX, settingsFromAnnotations, WebhookDefaults, wantsOras } from './annotations';
import { admissionReview, AdmissionResponse, allowed, denied, errored, PatchOperation, patched } from './responses';
import { DEFAULT_CONTAINER_ANNOTATION, injectOras, InjectionError, InjectionSetting, isInjected, PROVENANCE } from '../../src/injection';

export type ReviewOutcome = 'patched' | 'unchanged' | 'denied';

export interface ReviewResult {
  /** HTTP status of the answer: 200, or 400 for a request that is not an AdmissionReview. */
  readonly status: number;
  readonly body: unknown;
  readonly outcome: ReviewOutcome | 'malformed';
}

/** The annotation that sets each injection setting, to name it in a denial. */
const ANNOTATION_OF: Partial<Record<InjectionSetting, string>> = {
  container: 'container',
  inputPath: 'input-path',
  outputPath: 'output-path',
  stdoutFile: 'output-pipe',
  inputTimeout: 'input-timeout',
};

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

/** Names the app container as kubectl's default (oras-pull comes first), unless the pod names one already. */
function defaultContainer(pod: PodUnderReview, app: string): PatchOperation[] {
  const { pointer, exists, annotations } = pod.metadata;
  if (annotations?.[DEFAULT_CONTAINER_ANNOTATION] !== undefined) return [];
  if (!exists) return [{ op: 'add', path: pointer, value: { annotations: { [DEFAULT_CONTAINER_ANNOTATION]: app } } }];
  if (!annotations) return [{ op: 'add', path: `${pointer}/annotations`, value: { [DEFAULT_CONTAINER_ANNOTATION]: app } }];
  return [{ op: 'add', path: `${pointer}/annotations/${escapePointer(DEFAULT_CONTAINER_ANNOTATION)}`, value: app }];
}

/**
 * The handler: prepares an annotated Pod, or the pod template of an
 * annotated Job (the Job's annotations apply to its template), with the same
 * injectOras that steps use at synth time. Already prepared objects and
 * objects without ORAS annotations pass unchanged.
 */
export function handle(request: AdmissionRequest, defaults: WebhookDefaults): AdmissionResponse {
  try {
    const pod = readPod(request);
    if (!wantsOras(pod.annotations)) return allowed();
    const spec = podSpec(pod);
    if (isInjected(spec)) return allowed();

    const settings = settingsFromAnnotations(pod.annotations, spec, defaults);
    const app = spec.containers.find((c) => c.name === settings.container)!;
    const prepared = injectOras(spec, {
      ...settings,
      output: settings.output && {
        ...settings.output,
        annotations: { [PROVENANCE.STEP]: pod.name, ...(app.image ? { [PROVENANCE.IMAGE]: app.image } : {}), ...settings.output.annotations },
      },
    });
    return patched([...diffTopLevel(pod.pointer, spec, prepared), ...defaultContainer(pod, app.name)]);
  } catch (err) {
    if (err instanceof MalformedObject) return denied(`this ${request.kind} cannot be read: ${err.message}; fix that field`);
    if (err instanceof AnnotationError) return denied(err.message);
    if (err instanceof InjectionError) {
      const annotation = err.setting && ANNOTATION_OF[err.setting];
      return denied(annotation ? `${PREFIX}${annotation}: ${err.message}` : err.message);
    }
    return errored(`cannot prepare this ${request.kind}: ${(err as Error).message}`);
  }
}

function outcomeOf(response: AdmissionResponse): ReviewOutcome {
  if (!response.allowed) return 'denied';
  return response.patch ? 'patched' : 'unchanged';
}

/** Decodes an AdmissionReview body, handles its request, and encodes the answer with the request's uid. */
export function review(body: unknown, defaults: WebhookDefaults): ReviewResult {
  let request: AdmissionRequest;
  try {
    request = decodeReview(body);
  } catch (err) {
    if (!(err instanceof MalformedReview)) throw err;
    return { status: 400, outcome: 'malformed', body: { error: err.message } };
  }
  const response = handle(request, defaults);
  return { status: 200, outcome: outcomeOf(response), body: admissionReview(request.uid, response) };
}

import { AdmissionRequest, decodeReview, MalformedObject, MalformedReview, podSpec, PodUnderReview, readPods } from './admission-request';
import { AnnotationError, PREFIX, settingsFromAnnotations, WebhookDefaults, wantsOras } from './annotations';
import { admissionReview, AdmissionResponse, denied, errored, PatchOperation, patched, withWarnings } from './responses';
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

/** The patch that prepares one pod (none when it wants no ORAS or is prepared already), and its warnings. */
function preparePod(pod: PodUnderReview, defaults: WebhookDefaults): { operations: PatchOperation[]; warnings: string[] } {
  if (!wantsOras(pod.annotations)) return { operations: [], warnings: [] };
  const spec = podSpec(pod);
  if (isInjected(spec)) return { operations: [], warnings: [] };
  const { settings, warnings } = settingsFromAnnotations(pod.annotations, spec, defaults);
  // The first app container names the image in the provenance, and is kubectl's default; injectOras refuses a pod without one.
  const app = spec.containers.find((c) => c.name === settings.containers?.[0]);
  const prepared = injectOras(spec, {
    ...settings,
    output: settings.output && {
      ...settings.output,
      annotations: { [PROVENANCE.STEP]: pod.name, ...(app?.image ? { [PROVENANCE.IMAGE]: app.image } : {}), ...settings.output.annotations },
    },
  });
  return { operations: [...diffTopLevel(pod.pointer, spec, prepared), ...defaultContainer(pod, app!.name)], warnings };
}

/**
 * The handler: prepares an annotated Pod, the pod template of an annotated
 * Job, or every replicated Job's pod template of a JobSet (an owner's
 * annotations apply to its templates), with the same injectOras that steps
 * use at synth time. Already prepared objects and objects without ORAS
 * annotations pass unchanged. What the author should know comes back as
 * warnings, which kubectl prints.
 */
export function handle(request: AdmissionRequest, defaults: WebhookDefaults): AdmissionResponse {
  // A JobSet has several templates: messages say which one they are about.
  let where = '';
  try {
    const operations: PatchOperation[] = [];
    const warnings: string[] = [];
    for (const pod of readPods(request)) {
      where = request.kind === 'JobSet' ? `replicated job "${pod.name}": ` : '';
      const prepared = preparePod(pod, defaults);
      operations.push(...prepared.operations);
      warnings.push(...prepared.warnings.map((w) => where + w));
    }
    return withWarnings(patched(operations), [...new Set(warnings)]);
  } catch (err) {
    if (err instanceof MalformedObject) return denied(`${where}this ${request.kind} cannot be read: ${err.message}; fix that field`);
    if (err instanceof AnnotationError) return denied(where + err.message);
    if (err instanceof InjectionError) {
      const annotation = err.setting && ANNOTATION_OF[err.setting];
      return denied(where + (annotation ? `${PREFIX}${annotation}: ${err.message}` : err.message));
    }
    return errored(`${where}cannot prepare this ${request.kind}: ${(err as Error).message}`);
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

import { PodSpecJson } from '../../src/injection';

/** The kinds this webhook prepares: a Pod, a Job's pod template, and every replicated Job's pod template of a JobSet. */
export type AdmittedKind = 'Pod' | 'Job' | 'JobSet';
const ADMITTED: readonly string[] = ['Pod', 'Job', 'JobSet'];

/** A body that is not an AdmissionReview v1 for an admitted kind: it gets HTTP 400, as there is no request to answer. */
export class MalformedReview extends Error {
  public override readonly name = 'MalformedReview';
}

/** An object with a field of the wrong type: the review is denied with the field named. */
export class MalformedObject extends Error {
  public override readonly name = 'MalformedObject';
}

export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: AdmittedKind;
  readonly object: Record<string, unknown>;
}

/** The parts of a Pod, or of a pod template, that the handler reads. */
export interface PodUnderReview {
  /** The object's name; for a JobSet's template `<jobset>-<replicated job>`. */
  readonly name: string;
  /** The annotations that apply: an owner's over its templates'. */
  readonly annotations: Record<string, string>;
  /** The pod spec, not checked yet: `podSpec()` checks it. */
  readonly spec: unknown;
  /** Where the pod spec is, as a JSON pointer for the patch and as a field for messages. */
  readonly pointer: string;
  /** Where the pod's own metadata is (a template may have none), and its annotations when it has any. */
  readonly metadata: { readonly pointer: string; readonly exists: boolean; readonly annotations?: Record<string, string> };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads the request of an AdmissionReview v1 body. */
export function decodeReview(body: unknown): AdmissionRequest {
  if (!isRecord(body) || body.apiVersion !== 'admission.k8s.io/v1' || body.kind !== 'AdmissionReview' || !isRecord(body.request)) {
    throw new MalformedReview('expected an admission.k8s.io/v1 AdmissionReview with a request');
  }
  const { uid, kind, object } = body.request;
  if (typeof uid !== 'string' || uid === '') throw new MalformedReview('the AdmissionReview request needs a uid that is a non-empty string');
  if (!isRecord(kind) || typeof kind.kind !== 'string') {
    throw new MalformedReview('the AdmissionReview request.kind must be a group, version and kind, such as {"group":"","version":"v1","kind":"Pod"}');
  }
  const kindName = kind.kind;
  if (!ADMITTED.includes(kindName)) throw new MalformedReview(`this webhook admits Pods, Jobs and JobSets, not "${kindName}"`);
  if (!isRecord(object)) throw new MalformedReview(`the AdmissionReview request has no ${kindName} object`);
  return { uid, kind: kindName as AdmittedKind, object };
}

/** Checks one value at `field`; throws MalformedObject naming the field. */
type Check = (value: unknown, field: string) => void;

const wrong = (field: string, expected: string): never => {
  throw new MalformedObject(`${field} must be ${expected}`);
};
const text: Check = (value, field) => {
  if (typeof value !== 'string') wrong(field, 'a string');
};
const optional = (check: Check): Check => (value, field) => {
  if (value !== undefined && value !== null) check(value, field);
};
const listOf = (item: Check): Check => (value, field) => {
  if (!Array.isArray(value)) wrong(field, 'a list');
  (value as unknown[]).forEach((entry, i) => item(entry, `${field}[${i}]`));
};
const mapOf = (item: Check): Check => (value, field) => {
  if (!isRecord(value)) wrong(field, 'an object');
  for (const [key, entry] of Object.entries(value as Record<string, unknown>)) item(entry, `${field}[${JSON.stringify(key)}]`);
};
const objectWith = (fields: Record<string, Check>): Check => (value, field) => {
  if (!isRecord(value)) wrong(field, 'an object');
  for (const [key, check] of Object.entries(fields)) check((value as Record<string, unknown>)[key], `${field}.${key}`);
};

const metadata = optional(objectWith({ name: optional(text), generateName: optional(text), annotations: optional(mapOf(text)) }));
const container = objectWith({
  name: text,
  image: optional(text),
  command: optional(listOf(text)),
  args: optional(listOf(text)),
  workingDir: optional(text),
  env: optional(listOf(objectWith({ name: text }))),
  envFrom: optional(listOf(objectWith({}))),
  volumeMounts: optional(listOf(objectWith({ name: text, mountPath: text }))),
});
const podSpecShape = objectWith({
  containers: listOf(container),
  initContainers: optional(listOf(container)),
  volumes: optional(listOf(objectWith({ name: text }))),
});

type Metadata = { name?: string; generateName?: string; annotations?: Record<string, string> } | undefined;

type Template = { metadata?: Metadata; spec?: unknown } | undefined;
const template = optional(objectWith({ metadata }));

/** A pod template at `pointer` (`<pointer>/metadata`, `<pointer>/spec`) under owners whose annotations win over its own. */
function templateUnderReview(name: string, owners: Record<string, string>, pod: Template, pointer: string): PodUnderReview {
  return {
    name,
    annotations: { ...pod?.metadata?.annotations, ...owners },
    spec: pod?.spec,
    pointer: `${pointer}/spec`,
    metadata: { pointer: `${pointer}/metadata`, exists: pod?.metadata !== undefined && pod.metadata !== null, annotations: pod?.metadata?.annotations },
  };
}

/** Reads the name and annotations of the request's Pod, or of each pod template of its Job or JobSet, and where each pod spec is. */
export function readPods(request: AdmissionRequest): PodUnderReview[] {
  const object = request.object;
  metadata(object.metadata, 'metadata');
  const own = object.metadata as Metadata;
  const name = own?.name ?? own?.generateName ?? '';
  // A Pod is its own template, at the root.
  if (request.kind === 'Pod') return [templateUnderReview(name, {}, object as Template, '')];
  if (request.kind === 'Job') {
    optional(objectWith({ template }))(object.spec, 'spec');
    const pod = (object.spec as { template?: Template } | undefined)?.template;
    return [templateUnderReview(name, { ...own?.annotations }, pod, '/spec/template')];
  }
  // A JobSet: spec.replicatedJobs[i].template is a Job template, whose spec.template is the pod template.
  const jobTemplate = optional(objectWith({ metadata, spec: optional(objectWith({ template })) }));
  optional(objectWith({ replicatedJobs: optional(listOf(objectWith({ name: optional(text), template: jobTemplate }))) }))(object.spec, 'spec');
  type ReplicatedJob = { name?: string; template?: { metadata?: Metadata; spec?: { template?: Template } } };
  const replicated = (object.spec as { replicatedJobs?: ReplicatedJob[] } | undefined)?.replicatedJobs ?? [];
  return replicated.map((job, i) => templateUnderReview(
    `${name}-${job.name ?? i}`,
    { ...job.template?.metadata?.annotations, ...own?.annotations },
    job.template?.spec?.template,
    `/spec/replicatedJobs/${i}/template/spec/template`,
  ));
}

/** The pod spec, once its fields that the injection reads have the right types. */
export function podSpec(pod: PodUnderReview): PodSpecJson {
  podSpecShape(pod.spec, pod.pointer.slice(1).replace(/\//g, '.'));
  return pod.spec as PodSpecJson;
}

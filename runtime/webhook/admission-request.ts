import { PodSpecJson } from '../../src/injection';

/** A body that is not an AdmissionReview v1 for a Pod or a Job: it gets HTTP 400, as there is no request to answer. */
export class MalformedReview extends Error {
  public override readonly name = 'MalformedReview';
}

/** An object with a field of the wrong type: the review is denied with the field named. */
export class MalformedObject extends Error {
  public override readonly name = 'MalformedObject';
}

export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: 'Pod' | 'Job';
  readonly object: Record<string, unknown>;
}

/** The parts of a Pod, or of a Job's pod template, that the handler reads. */
export interface PodUnderReview {
  readonly name: string;
  /** A Job's annotations over its template's. */
  readonly annotations: Record<string, string>;
  /** The pod spec, not checked yet: `podSpec()` checks it. */
  readonly spec: unknown;
  /** Where the pod spec is, as a JSON pointer for the patch and as a field for messages. */
  readonly pointer: '/spec' | '/spec/template/spec';
  /** Where the pod's own metadata is (a Job's template may have none), and its annotations when it has any. */
  readonly metadata: { readonly pointer: '/metadata' | '/spec/template/metadata'; readonly exists: boolean; readonly annotations?: Record<string, string> };
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
  if (kindName !== 'Pod' && kindName !== 'Job') throw new MalformedReview(`this webhook admits Pods and Jobs, not "${kindName}"`);
  if (!isRecord(object)) throw new MalformedReview(`the AdmissionReview request has no ${kindName} object`);
  return { uid, kind: kindName, object };
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

/** Reads the name and annotations of the request's Pod or Job, and where its pod spec is. */
export function readPod(request: AdmissionRequest): PodUnderReview {
  const object = request.object;
  metadata(object.metadata, 'metadata');
  const own = object.metadata as Metadata;
  const name = own?.name ?? own?.generateName ?? '';
  if (request.kind === 'Pod') {
    return {
      name,
      annotations: { ...own?.annotations },
      spec: object.spec,
      pointer: '/spec',
      metadata: { pointer: '/metadata', exists: own !== undefined && own !== null, annotations: own?.annotations },
    };
  }

  optional(objectWith({ template: optional(objectWith({ metadata })) }))(object.spec, 'spec');
  const template = (object.spec as { template?: { metadata?: Metadata; spec?: unknown } } | undefined)?.template;
  return {
    name,
    annotations: { ...template?.metadata?.annotations, ...own?.annotations },
    spec: template?.spec,
    pointer: '/spec/template/spec',
    metadata: { pointer: '/spec/template/metadata', exists: template?.metadata !== undefined && template.metadata !== null, annotations: template?.metadata?.annotations },
  };
}

/** The pod spec, once its fields that the injection reads have the right types. */
export function podSpec(pod: PodUnderReview): PodSpecJson {
  podSpecShape(pod.spec, pod.pointer.slice(1).replace(/\//g, '.'));
  return pod.spec as PodSpecJson;
}

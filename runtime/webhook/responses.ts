/**
 * Named AdmissionResponse helpers, as controller-runtime has them
 * (`Allowed`, `Denied`, `Patched`, `WithWarnings`). The handler returns a
 * response without a uid; `admissionReview` adds the request's uid.
 */

/** One JSONPatch (RFC 6902) operation. */
export interface PatchOperation {
  readonly op: 'add' | 'replace' | 'remove';
  readonly path: string;
  readonly value?: unknown;
}

export interface AdmissionStatus {
  readonly code: number;
  readonly reason: string;
  readonly message: string;
}

export interface AdmissionResponse {
  readonly allowed: boolean;
  readonly status?: AdmissionStatus;
  readonly patchType?: 'JSONPatch';
  /** The JSONPatch, base64-encoded. */
  readonly patch?: string;
  /** Printed by kubectl. */
  readonly warnings?: string[];
}

export interface AdmissionReview {
  readonly apiVersion: 'admission.k8s.io/v1';
  readonly kind: 'AdmissionReview';
  readonly response: AdmissionResponse & { readonly uid: string };
}

/** Every message of this webhook starts so, to say who answered. */
const SOURCE = 'cdk8s-oras: ';

/** Admits the object unchanged. */
export function allowed(): AdmissionResponse {
  return { allowed: true };
}

/** Refuses the object; the message says what to change. */
export function denied(message: string): AdmissionResponse {
  return { allowed: false, status: { code: 400, reason: 'BadRequest', message: SOURCE + message } };
}

/** Refuses the object because this webhook failed, not because of the object. */
export function errored(message: string): AdmissionResponse {
  return { allowed: false, status: { code: 500, reason: 'InternalError', message: SOURCE + message } };
}

/** Admits the object with these changes (unchanged when there are none). */
export function patched(operations: readonly PatchOperation[]): AdmissionResponse {
  if (operations.length === 0) return allowed();
  return { allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(operations)).toString('base64') };
}

/** The response with these warnings added; none leaves it as it is. */
export function withWarnings(response: AdmissionResponse, warnings: readonly string[]): AdmissionResponse {
  if (warnings.length === 0) return response;
  return { ...response, warnings: [...(response.warnings ?? []), ...warnings.map((w) => SOURCE + w)] };
}

/** The AdmissionReview that answers the request `uid`. */
export function admissionReview(uid: string, response: AdmissionResponse): AdmissionReview {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, ...response } };
}

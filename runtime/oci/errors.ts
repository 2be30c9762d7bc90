/**
 * The errors of the OCI client, as values: callers decide by class and fields, never by message text.
 * `isTransient()` in retry.ts says which of them a retry may cure.
 */

/** `GET https://host/v2/…`: origin and path only, since a query may hold presigned credentials. */
export function requestLabel(method: string, url: URL): string {
  return `${method} ${url.origin}${url.pathname}`;
}

/** An answer the registry gave that the request could not accept: method, URL, status and the registry's error codes. */
export class RegistryError extends Error {
  public override name = 'RegistryError';
  /** Every code of the answer's `errors` list (the OCI distribution spec allows several), `code` first. */
  public readonly codes: readonly string[];

  constructor(
    public readonly method: string,
    public readonly url: URL,
    public readonly status: number,
    /** The first OCI error code (`BLOB_UNKNOWN`, `DENIED`, ...), or one of ours when the answer had none. */
    public readonly code: string,
    detail: string,
    /** How long a 429 or 503 answer asked us to wait (Retry-After). */
    public readonly retryAfterMs?: number,
    codes?: readonly string[],
  ) {
    super(`${requestLabel(method, url)}: ${status} ${code}${detail ? `: ${detail}` : ''}`);
    this.codes = codes && codes.length > 0 ? codes : [code];
  }
}

/** Credentials were missing or refused, by the registry (401, 403) or by its token service. */
export class AuthError extends RegistryError {
  public override name = 'AuthError';
  constructor(public readonly registry: string, method: string, url: URL, status: number, code: string, detail: string, message?: string,
    codes?: readonly string[]) {
    super(method, url, status, code, detail, undefined, codes);
    if (message !== undefined) this.message = message;
  }
}

/** A request that failed before any response: names the method and URL; `cause` is the system error. */
export class TransportError extends Error {
  public override name = 'TransportError';
  constructor(method: string, url: URL, public readonly cause: Error & { code?: string }) {
    super(`${requestLabel(method, url)}: ${cause.message}`);
  }
}

/** Content that does not match the digest or size it was asked for by. */
export class ContentMismatchError extends Error {
  public override name = 'ContentMismatchError';
  /** Fewer bytes than declared arrived: the transfer broke, and a retry may succeed. */
  public readonly truncated: boolean;
  /** More bytes than declared arrived: reading stopped at once. */
  public readonly oversized: boolean;

  constructor(
    public readonly what: string,
    public readonly expected: { readonly digest: string; readonly size?: number },
    public readonly actual: { readonly digest?: string; readonly size: number },
    cause?: Error,
  ) {
    const truncated = expected.size !== undefined && actual.size < expected.size;
    const oversized = expected.size !== undefined && actual.size > expected.size;
    let detail: string;
    if (oversized) {
      detail = `the registry sent more than the ${expected.size} bytes declared; reading stopped`;
    } else if (truncated && actual.digest === undefined) {
      detail = `the transfer broke after ${actual.size} of ${expected.size} bytes${cause ? ` (${cause.message})` : ''}`;
    } else {
      const sizes = truncated ? ` (expected ${expected.size} bytes, got ${actual.size})` : '';
      detail = `content does not match: expected ${expected.digest}, got ${actual.digest}${sizes}. `
        + 'The registry returned other content than it advertised (truncated or corrupted)';
    }
    super(`${what}: ${detail}; nothing was written.`, { cause });
    this.truncated = truncated;
    this.oversized = oversized;
  }
}

/** A manifest or index that breaks the OCI image spec: names the field. */
export class InvalidManifestError extends Error {
  public override name = 'InvalidManifestError';
  constructor(what: string, public readonly field: string, problem: string) {
    super(`${what} is invalid: ${field} ${problem}`);
  }
}

/** A digest, tag or repository name that may not go into a URL (a digest must be `algorithm:hex` of the right length). */
export class InvalidReferenceError extends Error {
  public override name = 'InvalidReferenceError';
  constructor(what: string, value: string, expected = 'a sha256 or sha512 digest') {
    super(`${what}: ${JSON.stringify(value)} is not ${expected}`);
  }
}

/** A tar entry, link or layer title that would write or point outside the output directory. */
export class PathEscapeError extends Error {
  public override name = 'PathEscapeError';
  /** `entry`: the title, entry name or path refused. */
  constructor(public readonly entry: string, message: string) {
    super(message);
  }
}

/** A tar archive that is malformed, truncated, or holds entries we do not extract. */
export class InvalidTarError extends Error {
  public override name = 'InvalidTarError';
}

/** Something is larger or more numerous than a configured limit; names the limit and how to raise it. */
export class LimitError extends Error {
  public override name = 'LimitError';
  constructor(what: string, public readonly limit: string, public readonly value: number, raise: string) {
    super(`${what} exceeds the limit of ${value} ${limit}; ${raise}`);
  }
}

/** The file system has no room for what is to be written. */
export class DiskFullError extends Error {
  public override name = 'DiskFullError';
  constructor(public readonly path: string, detail: string) {
    super(`no space left for ${path}: ${detail}`);
  }
}

/** An operation ran past its deadline. */
export class TimeoutError extends Error {
  public override name = 'TimeoutError';
  constructor(what: string, public readonly timeoutMs: number, detail?: string) {
    super(`${what} timed out after ${formatSeconds(timeoutMs)}${detail ? `; ${detail}` : ''}`);
  }
}

/** A transfer made too little progress (no answer, or fewer bytes per window than the minimum rate). */
export class StalledError extends Error {
  public override name = 'StalledError';
}

/** The operation was cancelled (SIGTERM, SIGINT, or the caller's signal). */
export class CancelledError extends Error {
  public override name = 'CancelledError';
  /** `signal`: the process signal that cancelled, if one did. */
  constructor(why: string, public readonly signal?: NodeJS.Signals) {
    super(`cancelled: ${why}`);
  }
}

/** The `ENOSPC`/`EDQUOT` of a write as a DiskFullError naming the path; any other error unchanged. */
export function asDiskFull(err: unknown, path: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' ? new DiskFullError(path, (err as Error).message) : err;
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

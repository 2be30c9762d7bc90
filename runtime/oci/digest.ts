import { createHash, Hash } from 'node:crypto';
import { Transform, TransformCallback } from 'node:stream';
import { ContentMismatchError, InvalidReferenceError } from './errors';

const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

/** Whether `value` is `sha256:<64 hex>` or `sha512:<128 hex>`, the only digests that may reach a URL. */
export function isDigest(value: unknown): value is string {
  return typeof value === 'string' && DIGEST.test(value);
}

export function assertDigest(digest: unknown, what: string): asserts digest is string {
  if (!isDigest(digest)) throw new InvalidReferenceError(what, String(digest));
}

export function digestOf(data: Buffer | string, algorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

export function algorithmOf(digest: string): string {
  return digest.slice(0, digest.indexOf(':'));
}

/** A pass-through stream that hashes and counts what flows through it. */
export class DigestStream extends Transform {
  private readonly hash: Hash;
  private bytes = 0;

  constructor(private readonly algorithm = 'sha256') {
    super();
    this.hash = createHash(algorithm);
  }

  public override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }

  /** `sha256:<hex>` of everything seen; call once, after the end. */
  public digest(): string {
    return `${this.algorithm}:${this.hash.digest('hex')}`;
  }

  public get size(): number {
    return this.bytes;
  }
}

/**
 * Passes on at most the descriptor's size: a byte more fails at once (oversized). At the end it
 * fails unless size and digest match, so whatever reads from it never sees unverified success.
 */
export class VerifyingStream extends DigestStream {
  constructor(private readonly what: string, private readonly expected: { readonly digest: string; readonly size: number }) {
    super(algorithmOf(expected.digest));
  }

  public override _transform(chunk: Buffer, encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.size + chunk.length > this.expected.size) {
      callback(new ContentMismatchError(this.what, this.expected, { size: this.size + chunk.length }));
      return;
    }
    super._transform(chunk, encoding, callback);
  }

  public override _flush(callback: TransformCallback): void {
    try {
      verifyContent(this.what, this.expected, { digest: this.digest(), size: this.size });
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }
}

export function verifyContent(what: string, expected: { digest: string; size?: number }, actual: { digest: string; size: number }): void {
  if (actual.digest !== expected.digest || (expected.size !== undefined && expected.size !== actual.size)) {
    throw new ContentMismatchError(what, expected, actual);
  }
}

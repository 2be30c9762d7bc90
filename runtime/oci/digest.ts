import { createHash, Hash } from 'node:crypto';
import { Transform, TransformCallback } from 'node:stream';

const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export function assertDigest(digest: string, what: string): void {
  if (!DIGEST.test(digest)) throw new Error(`${what}: "${digest}" is not a sha256 or sha512 digest`);
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

/** Thrown when content does not match the digest or size it was asked for by. */
export class ContentMismatchError extends Error {
  constructor(what: string, expected: { digest: string; size?: number }, actual: { digest: string; size: number }) {
    const sizePart = expected.size !== undefined && expected.size !== actual.size ? ` (expected ${expected.size} bytes, got ${actual.size})` : '';
    super(`${what}: content does not match: expected ${expected.digest}, got ${actual.digest}${sizePart}. `
      + 'The registry returned other content than it advertised (truncated or corrupted); nothing was written.');
    this.name = 'ContentMismatchError';
  }
}

export function verifyContent(what: string, expected: { digest: string; size?: number }, actual: { digest: string; size: number }): void {
  if (actual.digest !== expected.digest || (expected.size !== undefined && expected.size !== actual.size)) {
    throw new ContentMismatchError(what, expected, actual);
  }
}

declare const ORAS_RUNTIME_VERSION: string;

/** The package version, fixed into the bundle at build time. */
export const RUNTIME_VERSION: string = typeof ORAS_RUNTIME_VERSION === 'string' ? ORAS_RUNTIME_VERSION : '0.0.0-dev';

import { spawnSync } from 'child_process';
import { accessSync, constants } from 'fs';
import { homedir } from 'os';
import { join } from 'path';

/** Where scripts/install-peers.sh puts the Go and Python peers. */
export const PEERS_BIN = join(process.env.CDK8S_ORAS_PEERS ?? join(homedir(), '.cache', 'cdk8s-oras'), 'bin');

const INSTALL_HINT = 'Install the test peers with "bash scripts/install-peers.sh" (as root).';

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The path of a peer program, looked up in PEERS_BIN and then PATH, or undefined. */
export function findPeer(name: string): string | undefined {
  const candidates = [PEERS_BIN, ...(process.env.PATH ?? '').split(':').filter(Boolean)].map((dir) => join(dir, name));
  return candidates.find(executable);
}

/** The path of a peer the test cannot run without. Always throws when it is missing. */
export function requirePeer(name: string): string {
  const path = findPeer(name);
  if (!path) throw new Error(`The test peer "${name}" is not installed. ${INSTALL_HINT}`);
  return path;
}

/**
 * `describe` when every peer is present. When one is missing, the block fails
 * under CI=true and is skipped (with a warning) elsewhere.
 */
export function describeWithPeers(peers: string[], title: string, body: () => void): void {
  const missing = peers.filter((p) => !findPeer(p));
  if (missing.length === 0) {
    describe(title, body);
  } else if (process.env.CI === 'true') {
    describe(title, () => {
      test(`peers ${missing.join(', ')} are installed`, () => {
        throw new Error(`Missing test peers under CI: ${missing.join(', ')}. ${INSTALL_HINT}`);
      });
    });
  } else {
    // eslint-disable-next-line no-console
    console.warn(`Skipping "${title}": missing peers ${missing.join(', ')}. ${INSTALL_HINT}`);
    describe.skip(title, body);
  }
}

/** Runs a program and returns its exit status and output; never throws on a non-zero exit. */
export function run(file: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}) {
  const result = spawnSync(file, args, {
    input: options.input,
    env: options.env ?? process.env,
    cwd: options.cwd,
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 120_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, output: `${result.stdout}${result.stderr}` };
}

import { readFileSync } from 'fs';
import { join } from 'path';
import { OrasRuntimeImage } from '../../src';
import { describeWithPeers, requirePeer, run } from '../util/peers';

const root = join(__dirname, '..', '..');

describe('runtime/Dockerfile', () => {
  const dockerfile = readFileSync(join(root, 'runtime', 'Dockerfile'), 'utf8');

  test('uses a pinned Node LTS slim base', () => {
    const base = /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1];
    expect(base).toMatch(/^docker\.io\/library\/node:(2[02468])\.\d+\.\d+-[a-z]+-slim$/);
  });

  test('is multi-stage, runs as non-root and has the local image\'s layout', () => {
    expect(dockerfile.match(/^FROM /gm)).toHaveLength(2);
    expect(dockerfile).toMatch(/^USER 65532:65532$/m);
    expect(dockerfile).toContain('COPY --from=build /src/runtime/build/oras-runtime.cjs /src/runtime/build/oras-runtime-webhook.cjs /src/runtime/build/oras-runtime-csi.cjs /app/');
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "\/app\/oras-runtime.cjs"\]$/m);
  });
});

describeWithPeers(['podman', 'busybox'], 'the local runtime image (podman import)', () => {
  const image = OrasRuntimeImage.default().image;
  const podman = (...args: string[]) => run(requirePeer('podman'), args);

  beforeAll(() => {
    const build = run('bash', [join(root, 'runtime', 'image', 'build-local.sh')], { timeoutMs: 300_000 });
    if (build.status !== 0) throw new Error(`build-local.sh failed:\n${build.output}`);
  });

  test('is tagged as the constructs reference it and prints the version offline, read-only', () => {
    const result = podman('run', '--rm', '--read-only', '--network', 'none', image, '--version');
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version);
  });

  test('runs as uid 65532 with busybox sh', () => {
    const result = podman('run', '--rm', '--read-only', '--network', 'none', '--entrypoint', '/bin/sh', image, '-c', 'id -u; id -g; echo "$HOME"');
    expect(result.stdout).toBe('65532\n65532\n/home/oras\n');
  });

  test('a rebuild with an unchanged bundle is a no-op', () => {
    const again = run('bash', [join(root, 'runtime', 'image', 'build-local.sh')]);
    expect(again.status).toBe(0);
    expect(again.stdout).toContain('is up to date');
  });
});

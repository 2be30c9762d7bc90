import { createHash } from 'crypto';
import { readFileSync } from 'fs';
import { join } from 'path';
import { OrasRuntimeImage } from '../../src';
import { buildNodeBaseImage, buildRuntimeImage, RuntimeImageBuild } from '../util/images';
import { describeWithPeers, requirePeer, run } from '../util/peers';

const root = join(__dirname, '..', '..');
const version: string = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
const BUNDLES = ['oras-runtime.cjs', 'oras-runtime-webhook.cjs', 'oras-runtime-csi.cjs', 'oras-runtime-kube.cjs'];

describe('runtime/Dockerfile', () => {
  // The default base cannot be pulled here (the tests build on an offline one): its pin is checked as written.
  test('defaults to a pinned official Node LTS slim image', () => {
    const dockerfile = readFileSync(join(root, 'runtime', 'Dockerfile'), 'utf8');
    const base = /^ARG BASE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1];
    expect(base).toMatch(/^docker\.io\/library\/node:(2[468])\.\d+\.\d+-[a-z]+-slim$/);
  });
});

describeWithPeers(['podman', 'busybox'], 'the runtime image (runtime/Dockerfile on the offline base)', () => {
  const image = OrasRuntimeImage.default().image;
  const podman = (...args: string[]) => run(requirePeer('podman'), args);
  /** Runs the image as the pods do: read-only root filesystem, no network. */
  const runImage = (...args: string[]) => podman('run', '--rm', '--read-only', '--network', 'none', ...args);
  const shell = (script: string) => runImage('--entrypoint', '/bin/sh', image, '-c', script);
  let build: RuntimeImageBuild;

  beforeAll(() => {
    build = buildRuntimeImage();
  }, 300_000);

  test('is tagged as the constructs reference it and prints the version offline, read-only', () => {
    expect(build.image).toBe(image);
    const result = runImage(image, '--version');
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(`${version}\n`);
  });

  test('holds the bundles of runtime/build, byte for byte', () => {
    const inImage = shell('cd /app && sha256sum ' + BUNDLES.join(' '));
    expect(inImage.status).toBe(0);
    const expected = BUNDLES.map((b) => `${createHash('sha256').update(readFileSync(join(root, 'runtime', 'build', b))).digest('hex')}  ${b}\n`).join('');
    expect(inImage.stdout).toBe(expected);
  });

  test('has the layout and labels of a release image', () => {
    const config = JSON.parse(podman('image', 'inspect', '--format', '{{json .Config}}', image).stdout);
    expect(config.Entrypoint).toEqual(['/usr/local/bin/node', '/app/oras-runtime.cjs']);
    expect(config.User).toBe('65532:65532');
    expect(config.WorkingDir).toBe('/app');
    expect(config.Labels).toMatchObject({
      'org.opencontainers.image.version': version,
      'org.opencontainers.image.source': 'https://github.com/cdk8s-oras/cdk8s-oras',
    });
  });

  test('runs as uid 65532 with its own HOME', () => {
    const result = shell('id -u; id -g; echo "$HOME"; stat -c %u:%g /home/oras');
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe('65532\n65532\n/home/oras\n65532:65532\n');
  });

  test('has /bin/sh, and the mount and umount that the CSI plugin runs from PATH', () => {
    // As the plugin calls them: execFile by name, no shell (busybox sh would find its built-in applets).
    const script = "for (const p of ['mount', 'umount', 'sh']) { const r = require('child_process').spawnSync(p, ['--help']); console.log(p, r.error ? r.error.code : 'found'); }";
    const result = runImage('--entrypoint', '/usr/local/bin/node', image, '-e', script);
    expect(result.stdout).toBe('mount found\numount found\nsh found\n');
    expect(shell('test -x /bin/sh && test -x /bin/mount && test -x /bin/umount').status).toBe(0);
  });

  test('without arguments prints the usage', () => {
    const result = runImage(image);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(`oras-runtime ${version}`);
  });

  test.each([
    ['webhook', 'Usage: oras-runtime webhook', 'self-managed TLS needs --secret'],
    ['csi', 'Usage: oras-runtime csi', '--endpoint must be a unix socket'],
  ])('oras-runtime %s: its help, and its own bundle runs', (command, usage, usageError) => {
    const help = runImage(image, command, '--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toContain(usage);
    // Without flags the command's own bundle (loaded from /app) rejects the call.
    const bare = runImage(image, command);
    expect(bare.stderr).toContain(usageError);
    expect(bare.status).toBe(2);
  });

  test('the build refuses bundles of another version than it is labelled with', () => {
    const result = podman('build', '-f', join(root, 'runtime', 'Dockerfile'), '--network', 'none', '--pull=never',
      '--build-arg', `BASE_IMAGE=${buildNodeBaseImage()}`, '--build-arg', `SHELL_IMAGE=${buildNodeBaseImage()}`, '--build-arg', 'VERSION=0.0.0-other', root);
    expect(result.status).not.toBe(0);
    expect(result.output).toContain(`runtime/build holds oras-runtime ${version}, not 0.0.0-other`);
  });

  test('a rebuild with unchanged bundles is the same image, from the layer cache', () => {
    const id = () => podman('image', 'inspect', '--format', '{{.Id}}', image).stdout.trim();
    const before = id();
    const again = buildRuntimeImage();
    expect(id()).toBe(before);
    expect(again.output).not.toContain('bundling');
    expect(again.output).toContain('Using cache');
    expect(again.ms).toBeLessThan(15_000);
  });
});

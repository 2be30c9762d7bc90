import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { dirname, join } from 'path';
import { PEERS_BIN, requirePeer, run } from './peers';
import { CSI_PROVISIONER_IMAGE, DEFAULT_REGISTRY_IMAGE, OrasRuntimeImage } from '../../src';

const root = join(__dirname, '..', '..');

/** Builds NODE_IMAGES.busybox offline (once per machine): nothing but busybox-static, /bin/sh and its applets. */
export function buildBusyboxImage(): string {
  importRootfs(NODE_IMAGES.busybox, ['ENV PATH=/bin', 'CMD ["/bin/sh"]'], (rootfs) => {
    mkdirSync(join(rootfs, 'bin'));
    const busybox = requirePeer('busybox');
    copyFileSync(busybox, join(rootfs, 'bin', 'busybox'));
    // Relative links: `busybox --install -s` would point them at this build directory.
    const applets = run(busybox, ['--list']).stdout.split('\n').filter(Boolean);
    for (const applet of applets.filter((a) => a !== 'busybox')) symlinkSync('busybox', join(rootfs, 'bin', applet));
  });
  return NODE_IMAGES.busybox;
}

/** The environment of the image scripts: podman and busybox are found where the tests find them. */
function peersEnv(): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${PEERS_BIN}:${process.env.PATH ?? ''}` };
}

/** The offline Node base of the runtime image: this machine's node and busybox (runtime/image/build-base.sh, cached). */
export function buildNodeBaseImage(): string {
  const base = run('bash', [join(root, 'runtime', 'image', 'build-base.sh')], { env: peersEnv(), timeoutMs: 300_000 });
  if (base.status !== 0) throw new Error(`runtime/image/build-base.sh failed:\n${base.output}`);
  return base.stdout.trim();
}

export interface RuntimeImageBuild {
  /** The tag the script gave it: OrasRuntimeImage.default().image. */
  readonly image: string;
  /** What the build printed (podman's steps). */
  readonly output: string;
  readonly ms: number;
}

/**
 * Builds the runtime image from runtime/Dockerfile, as `npx projen runtime:image`
 * does, on the offline base: bundles first when they are stale, then a podman
 * build whose layers come from the cache when the bundles did not change.
 */
export function buildRuntimeImage(): RuntimeImageBuild {
  const env: NodeJS.ProcessEnv = { ...peersEnv(), ORAS_RUNTIME_ENGINE: 'podman' };
  delete env.ORAS_RUNTIME_IMAGE;
  delete env.ORAS_RUNTIME_BASE_IMAGE;
  const started = Date.now();
  // What `npx projen runtime:image --offline` runs.
  const build = run('bash', [join(root, 'runtime', 'image', 'build.sh'), '--offline'], { env, timeoutMs: 300_000 });
  if (build.status !== 0) throw new Error(`runtime/image/build.sh failed:\n${build.output}`);
  return { image: build.stdout.trim(), output: build.output, ms: Date.now() - started };
}

/**
 * The images the dist/ bundles and the node reference, under those exact
 * names. They are made offline: nothing here can be pulled.
 * - the runtime: built from runtime/Dockerfile (`npx projen runtime:image`);
 * - the registry: Debian's docker-registry, which is CNCF distribution 2.8,
 *   with the official image's configuration file and entry point;
 * - busybox: Debian's busybox-static with every applet;
 * - pause: the pod sandbox, compiled from the kubernetes module's pause.c;
 * - shellless: a distroless-style image with no shell and no PATH: one static
 *   program, /busybox (which only `/busybox <applet>` runs), and uid 65532;
 * - the CSI provisioner: external-provisioner v5.3.0 built from the Go module
 *   proxy (static), as /csi-provisioner in an otherwise empty image, like
 *   the official distroless one.
 */
export const NODE_IMAGES = {
  runtime: OrasRuntimeImage.default().image,
  registry: DEFAULT_REGISTRY_IMAGE,
  busybox: 'docker.io/library/busybox:1.36.1',
  pause: 'registry.k8s.io/pause:3.9',
  shellless: 'localhost/cdk8s-oras/shellless:1',
  provisioner: CSI_PROVISIONER_IMAGE,
} as const;

/** The official registry image's /etc/docker/registry/config.yml. */
const REGISTRY_CONFIG = `version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
`;

function podman(args: string[], what: string, timeoutMs = 300_000): string {
  const result = run(requirePeer('podman'), args, { timeoutMs });
  if (result.status !== 0) throw new Error(`${what}: podman ${args.join(' ')} failed: ${result.output}`);
  return result.stdout;
}

/** Copies `binary` and the shared libraries ldd lists for it into `rootfs`, at the same paths. */
function installWithLibraries(binary: string, rootfs: string, target: string): void {
  mkdirSync(dirname(join(rootfs, target)), { recursive: true });
  copyFileSync(binary, join(rootfs, target));
  const ldd = run('ldd', [binary]);
  for (const lib of ldd.status === 0 ? ldd.stdout.match(/\/[^ )]+/g) ?? [] : []) {
    mkdirSync(dirname(join(rootfs, lib)), { recursive: true });
    copyFileSync(lib, join(rootfs, lib));
  }
}

/** `podman import` of a rootfs, unless an image of that name exists already. */
function importRootfs(image: string, changes: string[], fill: (rootfs: string) => void): void {
  if (run(requirePeer('podman'), ['image', 'exists', image]).status === 0) return;
  const dir = mkdtempSync(join(tmpdir(), 'oras-node-image-'));
  try {
    const rootfs = join(dir, 'rootfs');
    mkdirSync(join(rootfs, 'tmp'), { recursive: true });
    fill(rootfs);
    const tar = run('tar', ['-C', rootfs, '--numeric-owner', '-cf', join(dir, 'rootfs.tar'), '.']);
    if (tar.status !== 0) throw new Error(tar.output);
    podman(['import', ...changes.flatMap((c) => ['--change', c]), join(dir, 'rootfs.tar'), image], `building ${image}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Builds every node image and saves each as an OCI archive in `dir`, for
 * `ctr images import`. Returns the archives' paths.
 */
export function buildNodeImages(dir: string): string[] {
  buildRuntimeImage();
  buildBusyboxImage();
  importRootfs(NODE_IMAGES.registry, ['ENTRYPOINT ["/bin/registry", "serve"]', 'CMD ["/etc/docker/registry/config.yml"]', 'EXPOSE 5000'], (rootfs) => {
    installWithLibraries(requirePeer('docker-registry'), rootfs, '/bin/registry');
    mkdirSync(join(rootfs, 'etc', 'docker', 'registry'), { recursive: true });
    writeFileSync(join(rootfs, 'etc', 'docker', 'registry', 'config.yml'), REGISTRY_CONFIG);
    mkdirSync(join(rootfs, 'var', 'lib', 'registry'), { recursive: true });
  });
  importRootfs(NODE_IMAGES.pause, ['ENTRYPOINT ["/pause"]', 'USER 65535:65535'], (rootfs) => {
    copyFileSync(requirePeer('pause'), join(rootfs, 'pause'));
  });
  importRootfs(NODE_IMAGES.shellless, ['USER 65532:65532', 'ENTRYPOINT ["/busybox"]'], (rootfs) => {
    copyFileSync(requirePeer('busybox'), join(rootfs, 'busybox'));
    chmodSync(join(rootfs, 'busybox'), 0o755);
    mkdirSync(join(rootfs, 'etc'));
    writeFileSync(join(rootfs, 'etc', 'passwd'), 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n');
  });
  importRootfs(NODE_IMAGES.provisioner, ['ENTRYPOINT ["/csi-provisioner"]', 'USER 65532:65532'], (rootfs) => {
    copyFileSync(requirePeer('csi-provisioner'), join(rootfs, 'csi-provisioner'));
    chmodSync(join(rootfs, 'csi-provisioner'), 0o755);
  });
  return Object.values(NODE_IMAGES).map((image) => {
    const archive = join(dir, `${image.replace(/[^a-zA-Z0-9.]+/g, '_')}.tar`);
    podman(['save', '--format', 'oci-archive', '-o', archive, image], `saving ${image}`);
    return archive;
  });
}

/**
 * Stand-ins for Docker Hub images that the operator prototype's documented
 * pods name verbatim (`ubuntu`, `perl:5.34.0`), which this machine cannot
 * pull: each is the busybox image under that name, so a pod that runs shell
 * utilities in them (touch, ls, echo) behaves as with the real image. The
 * node's containerd asks the test mirror for docker.io (KubeNodeOptions).
 * `workdir` keeps a file in its WORKDIR, as many application images do.
 */
export const HUB_STAND_INS = {
  ubuntu: 'library/ubuntu:latest',
  perl: 'library/perl:5.34.0',
  workdir: 'cdk8s-oras/workdir-demo:1',
} as const;

/** The file the `workdir` stand-in keeps in its WORKDIR /app, and its content. */
export const WORKDIR_FILE = { path: '/app/kept-by-the-image.txt', content: 'from the image\n' } as const;

/** Builds the stand-ins and pushes them to `mirror` (host:port, plain HTTP) under their Docker Hub names. */
export function pushHubStandIns(mirror: string): void {
  buildBusyboxImage();
  const dir = mkdtempSync(join(tmpdir(), 'oras-hub-'));
  try {
    writeFileSync(join(dir, 'kept.txt'), WORKDIR_FILE.content);
    writeFileSync(join(dir, 'Containerfile'), [
      `FROM ${NODE_IMAGES.busybox}`,
      `COPY kept.txt ${WORKDIR_FILE.path}`,
      'WORKDIR /app',
      '',
    ].join('\n'));
    const local = 'localhost/cdk8s-oras-workdir-demo:test';
    podman(['build', '--pull=never', '--network=none', '-t', local, '-f', join(dir, 'Containerfile'), dir], 'building the workdir stand-in');
    const sources: Record<keyof typeof HUB_STAND_INS, string> = { ubuntu: NODE_IMAGES.busybox, perl: NODE_IMAGES.busybox, workdir: local };
    for (const [key, name] of Object.entries(HUB_STAND_INS) as [keyof typeof HUB_STAND_INS, string][]) {
      podman(['push', '--tls-verify=false', '--format', 'oci', sources[key], `docker://${mirror}/${name}`], `pushing the ${key} stand-in`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

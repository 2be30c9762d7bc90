import { spawn } from 'child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { stringify } from 'yaml';
import { requirePeer, run } from './peers';

const root = join(__dirname, '..', '..');

/** An app image with nothing but busybox: /bin/sh and its applets. */
export const BUSYBOX_IMAGE = 'localhost/oras-test/busybox:2';

/** Builds BUSYBOX_IMAGE offline with podman import (once per machine). */
export function buildBusyboxImage(): string {
  const podman = requirePeer('podman');
  if (run(podman, ['image', 'exists', BUSYBOX_IMAGE]).status === 0) return BUSYBOX_IMAGE;
  const dir = mkdtempSync(join(tmpdir(), 'oras-busybox-'));
  try {
    const rootfs = join(dir, 'rootfs');
    mkdirSync(join(rootfs, 'bin'), { recursive: true });
    mkdirSync(join(rootfs, 'tmp'));
    const busybox = requirePeer('busybox');
    run('cp', [busybox, join(rootfs, 'bin', 'busybox')]);
    // Relative links: `busybox --install -s` would point them at this build directory.
    const applets = run(busybox, ['--list']).stdout.split('\n').filter(Boolean);
    for (const applet of applets.filter((a) => a !== 'busybox')) symlinkSync('busybox', join(rootfs, 'bin', applet));
    const tar = run('tar', ['-C', rootfs, '-cf', join(dir, 'rootfs.tar'), '.']);
    if (tar.status !== 0) throw new Error(tar.output);
    const imported = run(podman, ['import', '--change', 'ENV PATH=/bin', '--change', 'CMD ["/bin/sh"]', join(dir, 'rootfs.tar'), BUSYBOX_IMAGE]);
    if (imported.status !== 0) throw new Error(`podman import failed: ${imported.output}`);
    return BUSYBOX_IMAGE;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Builds the runtime image from the current bundle (a no-op when unchanged). */
export function buildRuntimeImage(): void {
  const build = run('bash', [join(root, 'runtime', 'image', 'build-local.sh')], { timeoutMs: 300_000 });
  if (build.status !== 0) throw new Error(`build-local.sh failed:\n${build.output}`);
}

export interface ContainerResult {
  readonly exitCode: number;
  readonly state: string;
  readonly logs: string;
  /** Epoch milliseconds (podman's record; 0 if it never started). */
  readonly startedAt: number;
  readonly finishedAt: number;
}

export interface PodResult {
  readonly name: string;
  /** Epoch milliseconds when `podman kube play` was called. */
  readonly playedAt: number;
  /** By container name (init containers that podman removed after success are absent). */
  readonly containers: Record<string, ContainerResult>;
  /** Milliseconds from `podman kube play` to the last container's exit. */
  readonly ms: number;
}

interface PodmanContainer {
  readonly Names: string[];
  readonly State: string;
  readonly ExitCode: number;
  readonly Pod: string;
  readonly PodName: string;
  readonly IsInfra: boolean;
}

function podContainers(pod: string): PodmanContainer[] {
  const listed = run(requirePeer('podman'), ['ps', '-a', '--filter', `pod=${pod}`, '--format', 'json']);
  return listed.status === 0 && listed.stdout.trim() ? (JSON.parse(listed.stdout) as PodmanContainer[]).filter((c) => !c.IsInfra) : [];
}

/**
 * The pod of a Job: its template's spec under the Job's name plus a suffix.
 * podman 4 turns an emptyDir into a named volume that every pod using the same
 * name shares; Kubernetes gives each pod its own. So each emptyDir gets the
 * pod's name in front, as the pod's own volume.
 */
export function podOfJob(job: any, suffix: string): any {
  const name = `${job.metadata.name}-${suffix}`;
  const spec = JSON.parse(JSON.stringify(job.spec.template.spec));
  const renamed = new Map<string, string>();
  for (const volume of spec.volumes ?? []) {
    if (volume.emptyDir) {
      renamed.set(volume.name, `${name}-${volume.name}`);
      volume.name = `${name}-${volume.name}`;
    }
  }
  for (const container of [...spec.containers, ...(spec.initContainers ?? [])]) {
    for (const mount of container.volumeMounts ?? []) mount.name = renamed.get(mount.name) ?? mount.name;
  }
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, labels: job.spec.template.metadata?.labels }, spec };
}

/**
 * Plays every pod at once with `podman kube play --network host` and waits
 * until each has finished: every container exited, or its init container failed.
 */
export async function runPods(pods: any[], timeoutMs: number, during?: (started: () => string[]) => Promise<void>): Promise<PodResult[]> {
  const podman = requirePeer('podman');
  const dir = mkdtempSync(join(tmpdir(), 'oras-pods-'));
  const started = Date.now();
  const plays = pods.map((pod) => {
    const file = join(dir, `${pod.metadata.name}.yaml`);
    writeFileSync(file, stringify(pod));
    return new Promise<{ name: string; output: string }>((resolve) => {
      const child = spawn(podman, ['kube', 'play', '--network', 'host', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (d) => { output += d; });
      child.stderr.on('data', (d) => { output += d; });
      child.on('close', () => resolve({ name: pod.metadata.name, output }));
    });
  });
  const playing = Promise.all(plays);
  try {
    if (during) await during(() => pods.map((p) => p.metadata.name));
    await playing;
    const results: PodResult[] = [];
    for (const pod of pods) {
      const name = pod.metadata.name;
      for (;;) {
        const containers = podContainers(name);
        // Once kube play has returned, a container still "created" will never start.
        const running = containers.some((c) => c.State === 'running');
        if (!running) break;
        if (Date.now() - started > timeoutMs) throw new Error(`pod ${name} still runs after ${timeoutMs} ms: ${JSON.stringify(containers.map((c) => [c.Names[0], c.State]))}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const containers: Record<string, ContainerResult> = {};
      for (const c of podContainers(name)) {
        const container = c.Names[0].slice(name.length + 1);
        const [startedAt, finishedAt] = run(podman, ['inspect', c.Names[0], '--format', '{{.State.StartedAt.UnixNano}} {{.State.FinishedAt.UnixNano}}'])
          .stdout.trim().split(' ').map((ns) => Math.max(Number(ns) / 1e6, 0));
        containers[container] = { exitCode: c.ExitCode, state: c.State, logs: run(podman, ['logs', c.Names[0]]).output, startedAt, finishedAt };
      }
      results.push({ name, containers, playedAt: started, ms: Date.now() - started });
    }
    return results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Removes pods and their volumes, ignoring those already gone. */
export function removePods(names: string[]): void {
  if (names.length === 0) return;
  const podman = requirePeer('podman');
  run(podman, ['pod', 'rm', '-f', ...names]);
  const volumes = run(podman, ['volume', 'ls', '--format', '{{.Name}}']).stdout.split('\n');
  const ours = volumes.filter((v) => names.some((n) => v.startsWith(`${n}-`)));
  if (ours.length > 0) run(podman, ['volume', 'rm', '-f', ...ours]);
}

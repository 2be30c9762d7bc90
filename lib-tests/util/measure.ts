import { spawn } from 'child_process';
import { readFileSync } from 'fs';

export interface Measured {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Wall time in milliseconds. */
  readonly ms: number;
  /** Peak resident memory (VmHWM) in MiB, sampled until exit. */
  readonly peakMiB: number;
}

/** The peak resident memory (VmHWM) of a live process, in MiB; 0 once it is gone. */
export function highWaterMiB(pid: number): number {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Runs a program, measuring wall time and peak RSS (the kernel's high-water mark, read every 10 ms). */
export function measure(file: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(file, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let peak = 0;
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setInterval(() => { peak = Math.max(peak, highWaterMiB(child.pid!)); }, 10);
    child.on('error', (err) => {
      clearInterval(timer);
      reject(err);
    });
    // 'exit' comes before the process is reaped, so /proc still has the final high-water mark.
    child.on('exit', () => { peak = Math.max(peak, highWaterMiB(child.pid!)); });
    child.on('close', (status) => {
      clearInterval(timer);
      resolve({ status, stdout, stderr, ms: Number(process.hrtime.bigint() - started) / 1e6, peakMiB: peak });
    });
  });
}

/** The median of some numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

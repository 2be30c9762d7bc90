import { Transform, TransformCallback } from 'node:stream';
import { printable } from './printable';

/** What push and pull tell the user. */
export interface Reporter {
  /** A one-off event: `skip`, `exists`, `retry`, `done`, … */
  event(name: string, fields: Record<string, unknown>): void;
  /** Counts bytes of one blob as they pass. */
  track(id: string, title: string, total: number): Transform;
}

/** Formats bytes as `12.3 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

class CountingStream extends Transform {
  public bytes = 0;
  public readonly started = Date.now();

  constructor(private readonly onBytes: (bytes: number) => void) {
    super();
  }

  public override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.onBytes(this.bytes);
    callback(null, chunk);
  }
}

/** One JSON object per line on the given stream (stderr by default): for logs and machines. */
export class JsonReporter implements Reporter {
  constructor(private readonly out: NodeJS.WritableStream = process.stderr) {}

  public event(name: string, fields: Record<string, unknown>): void {
    const safe = Object.fromEntries(Object.entries(fields).map(([key, value]) => [key, typeof value === 'string' ? printable(value) : value]));
    this.out.write(JSON.stringify({ time: new Date().toISOString(), event: name, ...safe }) + '\n');
  }

  public track(id: string, title: string, total: number): Transform {
    const counter: CountingStream = new CountingStream(() => undefined);
    counter.once('end', () => {
      const seconds = Math.max((Date.now() - counter.started) / 1000, 0.001);
      this.event('transferred', { digest: id, title, bytes: counter.bytes, total, seconds, bytesPerSecond: Math.round(counter.bytes / seconds) });
    });
    return counter;
  }
}

/** A live line per blob with bytes and rate, redrawn at most ten times a second. */
export class TtyReporter implements Reporter {
  private readonly lines = new Map<string, string>();
  private drawn = 0;
  private lastDraw = 0;

  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {}

  public event(name: string, fields: Record<string, unknown>): void {
    // A finished transfer already has its line.
    if (name === 'uploaded' || name === 'pulled') return;
    const label = fields.title ?? fields.reference ?? fields.digest ?? '';
    this.lines.set(`${name}:${label}:${this.lines.size}`, `${name.padEnd(11)} ${label}${fields.message ? `: ${fields.message}` : ''}`);
    this.draw(true);
  }

  public track(id: string, title: string, total: number): Transform {
    const key = `blob:${id}:${title}`;
    const counter: CountingStream = new CountingStream((bytes) => {
      const seconds = Math.max((Date.now() - counter.started) / 1000, 0.001);
      const percent = total > 0 ? ` ${Math.floor((bytes / total) * 100)}%` : '';
      this.lines.set(key, `${'↓/↑'.padEnd(11)} ${title} ${formatBytes(bytes)}/${formatBytes(total)}${percent} ${formatBytes(bytes / seconds)}/s`);
      this.draw(false);
    });
    counter.once('end', () => {
      const seconds = Math.max((Date.now() - counter.started) / 1000, 0.001);
      this.lines.set(key, `${'done'.padEnd(11)} ${title} ${formatBytes(counter.bytes)} in ${seconds.toFixed(1)} s (${formatBytes(counter.bytes / seconds)}/s)`);
      this.draw(true);
    });
    return counter;
  }

  private draw(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    // A terminal of unknown size reports 0 columns.
    const width = Math.max(this.out.columns || 100, 40);
    if (this.drawn > 0) this.out.write(`\x1b[${this.drawn}A`);
    for (const line of this.lines.values()) this.out.write(`\x1b[2K${printable(line).slice(0, width - 1)}\n`);
    this.drawn = this.lines.size;
  }
}

/** TTY progress on a terminal, JSON lines otherwise. */
export function defaultReporter(): Reporter {
  return process.stderr.isTTY ? new TtyReporter(process.stderr) : new JsonReporter(process.stderr);
}

/** Reports nothing (library use and tests). */
export class SilentReporter implements Reporter {
  public event(): void {}
  public track(): Transform {
    return new CountingStream(() => undefined);
  }
}

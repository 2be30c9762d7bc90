import { PassThrough } from 'stream';
import { JsonReporter, TtyReporter } from '../../../runtime/oci/progress';

/** A stream that keeps what is written to it, with the size of a terminal. */
function capture(): { stream: NodeJS.WriteStream; text: () => string } {
  const chunks: string[] = [];
  const stream = Object.assign(new PassThrough(), { columns: 200 }) as unknown as NodeJS.WriteStream;
  (stream as unknown as PassThrough).on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
  return { stream, text: () => chunks.join('') };
}

const HOSTILE = 'evil\x1b]0;pwned\x07\x1b[2J\u202etxt.exe\x00\x9b31m';

describe('reporters print untrusted text (layer titles, messages) with control characters escaped', () => {
  test('the terminal display', async () => {
    const { stream, text } = capture();
    const reporter = new TtyReporter(stream);
    reporter.event('skip', { title: HOSTILE, message: 'a\x1b[1Ab' });
    const tracker = reporter.track('sha256:0', HOSTILE, 4);
    tracker.end(Buffer.from('data'));
    tracker.resume();
    await new Promise((resolve) => tracker.on('end', resolve));
    const out = text().replace(/\x1b\[(\d+A|2K)/g, '');
    expect(out).toContain('evil\\x1b]0;pwned\\x07\\x1b[2J\\u202etxt.exe\\x00\\x9b31m');
    expect(out).toContain('a\\x1b[1Ab');
    expect(out).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/);
  });

  test('JSON lines', () => {
    const { stream, text } = capture();
    new JsonReporter(stream).event('skip', { title: HOSTILE });
    const line = JSON.parse(text());
    expect(line.title).toBe('evil\\x1b]0;pwned\\x07\\x1b[2J\\u202etxt.exe\\x00\\x9b31m');
    expect(text()).not.toMatch(/[\x7f-\x9f\u202e]/);
  });
});

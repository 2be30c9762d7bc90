/** C0 and C1 controls, DEL, and the bidi marks and overrides: what moves a cursor, changes a terminal or reorders text. */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` made safe to print on a terminal or in a log line: every control character becomes a
 * visible escape (`\x1b`, `\x00`, `\u202e`). Everything printed from untrusted data goes through here.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

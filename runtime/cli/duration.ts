const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses `90s`, `5m`, `1h30m`, `250ms` (or bare seconds) into milliseconds. */
export function parseDuration(text: string): number {
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  let m: RegExpExecArray | null;
  while ((m = part.exec(text)) !== null) {
    total += Number(m[1]) * UNITS[m[2]];
    consumed = part.lastIndex;
  }
  if (consumed !== text.length || text === '') throw new Error(`"${text}" is not a duration; write for example 90s, 5m or 1h30m`);
  return total;
}

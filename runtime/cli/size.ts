const UNITS: Record<string, number> = { '': 1, 'b': 1, 'k': 1000, 'kb': 1000, 'kib': 1024, 'm': 1000 ** 2, 'mb': 1000 ** 2, 'mib': 1024 ** 2, 'g': 1000 ** 3, 'gb': 1000 ** 3, 'gib': 1024 ** 3, 't': 1000 ** 4, 'tb': 1000 ** 4, 'tib': 1024 ** 4 };

/** Parses `512`, `64KiB`, `1.5GB`, `10GiB` into bytes (KB = 1000, KiB = 1024). */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = match ? UNITS[match[2].toLowerCase()] : undefined;
  if (!match || unit === undefined) throw new Error(`"${text}" is not a size; write for example 512MiB, 10GiB or 1GB`);
  return Math.round(Number(match[1]) * unit);
}

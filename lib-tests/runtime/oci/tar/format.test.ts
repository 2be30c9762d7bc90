import { InvalidTarError } from '../../../../runtime/oci/errors';
import { BLOCK, isZeroBlock, padding, parseHeader, parsePaxRecords, paxRecord, tarHeader } from '../../../../runtime/oci/tar/format';

describe('PAX records', () => {
  test.each([0, 1, 85, 88, 89, 90, 91, 92, 93, 990, 991, 992, 993, 994, 995])('a %d-byte value: the length counts the whole record', (n) => {
    const record = paxRecord('path', 'é'.repeat(Math.floor(n / 2)) + 'x'.repeat(n % 2));
    const length = Number(record.toString('latin1').split(' ')[0]);
    expect(length).toBe(record.length);
    expect(record[record.length - 1]).toBe(0x0a);
  });

  test('parse what we write: unicode, "=" and newlines in values', () => {
    const data = Buffer.concat([paxRecord('path', 'données/a=b.txt'), paxRecord('linkpath', 'two\nlines'), paxRecord('size', '9')]);
    expect(parsePaxRecords(data)).toEqual([['path', 'données/a=b.txt'], ['linkpath', 'two\nlines'], ['size', '9']]);
  });

  test.each(['13 path=abc\n', '11 path=abc\n', '9 path=abc\n', 'x path=a\n', '11 pathabc\n', '12 path=abc'])('refuses the malformed record %j', (text) => {
    expect(() => parsePaxRecords(Buffer.from(text))).toThrow(/invalid tar/);
  });
});

describe('headers: what tarHeader writes, parseHeader reads back', () => {
  const parse = (block: Buffer) => parseHeader(block, 0);

  test('a short name stays in the USTAR name field, with the traditional checksum layout', () => {
    const block = tarHeader({ name: 'data/a.txt', type: 'file', mode: 0o644, size: 5, mtime: 1_700_000_000 });
    expect(block.length).toBe(BLOCK);
    expect(block.toString('latin1', 257, 263)).toBe('ustar\0');
    expect(block.toString('latin1', 154, 156)).toBe('\0 ');
    expect(parse(block)).toEqual({ name: 'data/a.txt', type: '0', mode: 0o644, size: 5, mtime: 1_700_000_000, linkname: '' });
  });

  test('a name up to 255 bytes is split into prefix and name, with no PAX record', () => {
    const name = `data/${'p'.repeat(120)}/${'n'.repeat(90)}`;
    const block = tarHeader({ name, type: 'file', mode: 0o600, size: 0, mtime: 0 });
    expect(block.length).toBe(BLOCK);
    expect(parse(block).name).toBe(name);
  });

  test.each([
    ['a name USTAR cannot split', { name: `data/${'x'.repeat(140)}` }, [['path', `data/${'x'.repeat(140)}`]]],
    ['a unicode name', { name: 'data/日本語.txt' }, [['path', 'data/日本語.txt']]],
    ['a long link target', { type: 'symlink', linkname: 'l'.repeat(101) }, [['linkpath', 'l'.repeat(101)]]],
    ['a size of 8 GiB', { size: 8 * 1024 ** 3 }, [['size', String(8 * 1024 ** 3)]]],
    ['a negative mtime', { mtime: -1 }, [['mtime', '-1']]],
  ] as const)('%s goes into a PAX record before the entry', (_what, fields, records) => {
    const entry = { name: 'data/f', type: 'file' as const, mode: 0o644, size: 0, mtime: 0, ...fields };
    const bytes = tarHeader(entry);
    const pax = parse(bytes.subarray(0, BLOCK));
    expect(pax.type).toBe('x');
    expect(parsePaxRecords(bytes.subarray(BLOCK, BLOCK + pax.size))).toEqual(records);
    expect(bytes.length).toBe(BLOCK + pax.size + padding(pax.size) + BLOCK);
    expect(parse(bytes.subarray(bytes.length - BLOCK)).type).toBe(entry.type === 'symlink' ? '2' : '0');
  });

  test('old writers summed signed bytes: such a checksum is accepted', () => {
    const block = Buffer.from(tarHeader({ name: 'data/a', type: 'file', mode: 0o644, size: 0, mtime: 0 }));
    block.fill(0, 0, 100);
    block.write('caf\u00e9', 0, 'latin1'); // Latin-1, not UTF-8: read back as Latin-1
    let signed = 0;
    for (let i = 0; i < BLOCK; i++) {
      const byte = i >= 148 && i < 156 ? 0x20 : block[i];
      signed += byte >= 0x80 ? byte - 0x100 : byte;
    }
    block.write(`${signed.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    expect(parse(block).name).toBe('café');
  });

  test('a corrupted byte fails the checksum with the offset named', () => {
    const block = Buffer.from(tarHeader({ name: 'data/a', type: 'file', mode: 0o644, size: 1, mtime: 0 }));
    block[0] ^= 1;
    expect(() => parseHeader(block, 4096)).toThrow(InvalidTarError);
    expect(() => parseHeader(block, 4096)).toThrow(/at offset 4096: checksum mismatch .*the archive is corrupt/);
  });

  test('GNU base-256 numbers: a negative mtime and a size past the octal range', () => {
    const block = Buffer.from(tarHeader({ name: 'data/a', type: 'file', mode: 0o644, size: 0, mtime: 0 }));
    block.fill(0xff, 136, 148); // -1 in two's complement
    block.fill(0, 124, 136);
    block[124] = 0x80;
    block.writeUIntBE(2 ** 40, 130, 6);
    block.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of block) sum += byte;
    block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    expect(parse(block)).toMatchObject({ mtime: -1, size: 2 ** 40 });
  });

  test('the zero block is recognised, and a block with one byte set is not', () => {
    const zero = Buffer.alloc(BLOCK);
    expect(isZeroBlock(zero)).toBe(true);
    zero[511] = 1;
    expect(isZeroBlock(zero)).toBe(false);
  });
});

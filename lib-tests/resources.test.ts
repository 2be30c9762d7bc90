import { Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { quantity, renderResources } from '../src/resources';

describe('quantity', () => {
  test.each([
    [Size.mebibytes(1024), '1Gi'],
    [Size.gibibytes(20), '20Gi'],
    [Size.mebibytes(1536), '1536Mi'],
    [Size.mebibytes(64), '64Mi'],
    [Size.tebibytes(2), '2Ti'],
    [Size.kibibytes(1536), '1536Ki'],
  ])('%s is written %s, as the API server writes it back', (size, text) => {
    expect(quantity(size)).toBe(text);
  });
});

describe('renderResources', () => {
  const defaults = {
    cpu: { request: kplus.Cpu.millis(50), limit: kplus.Cpu.units(1) },
    memory: { request: Size.mebibytes(64), limit: Size.gibibytes(1) },
  };

  test('the defaults when nothing is given', () => {
    expect(renderResources(undefined, defaults)).toEqual({ requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '1', memory: '1Gi' } });
  });

  test('a kind the user gives replaces its default whole; the others keep theirs', () => {
    expect(renderResources({ memory: { limit: Size.gibibytes(2) }, ephemeralStorage: { request: Size.mebibytes(512) } }, defaults))
      .toEqual({ requests: { 'cpu': '50m', 'ephemeral-storage': '512Mi' }, limits: { cpu: '1', memory: '2Gi' } });
  });
});

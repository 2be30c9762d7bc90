import { prototypeReference } from '../../../runtime/csi/requests';

describe('the prototype\'s reference forms in volume attributes', () => {
  test.each([
    ['registry:5000/models/demo', 'registry:5000/models/demo:latest'],
    ['oras://registry:5000/models/demo', 'registry:5000/models/demo:latest'],
    ['oras://registry:5000/models/demo:v1', 'registry:5000/models/demo:v1'],
    ['registry:5000/models/demo:v1', 'registry:5000/models/demo:v1'],
    [`registry:5000/models/demo@sha256:${'a'.repeat(64)}`, `registry:5000/models/demo@sha256:${'a'.repeat(64)}`],
    // Nothing to add a tag to: the parser reports what is wrong with it.
    ['registry:5000', 'registry:5000'],
  ])('%s reads as %s', (text, expected) => {
    expect(prototypeReference(text)).toBe(expected);
  });
});

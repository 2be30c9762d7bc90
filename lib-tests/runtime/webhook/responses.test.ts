import { admissionReview, allowed, denied, errored, patched, withWarnings } from '../../../runtime/webhook/responses';

describe('AdmissionResponse helpers', () => {
  test('allowed, denied and errored', () => {
    expect(allowed()).toEqual({ allowed: true });
    expect(denied('rename it')).toEqual({ allowed: false, status: { code: 400, reason: 'BadRequest', message: 'cdk8s-oras: rename it' } });
    expect(errored('bug')).toEqual({ allowed: false, status: { code: 500, reason: 'InternalError', message: 'cdk8s-oras: bug' } });
  });

  test('patched encodes the JSONPatch; no operations is allowed unchanged', () => {
    const response = patched([{ op: 'add', path: '/spec/x', value: 1 }]);
    expect(response).toMatchObject({ allowed: true, patchType: 'JSONPatch' });
    expect(JSON.parse(Buffer.from(response.patch!, 'base64').toString())).toEqual([{ op: 'add', path: '/spec/x', value: 1 }]);
    expect(patched([])).toEqual(allowed());
  });

  test('warnings add up, each one line; none changes nothing', () => {
    const response = withWarnings(withWarnings(allowed(), ['one']), ['two']);
    expect(response).toEqual({ allowed: true, warnings: ['cdk8s-oras: one', 'cdk8s-oras: two'] });
    expect(withWarnings(allowed(), [])).toEqual({ allowed: true });
  });

  test('the review carries the request uid', () => {
    expect(admissionReview('u-9', allowed())).toEqual({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'u-9', allowed: true } });
  });
});
